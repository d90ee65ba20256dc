import java.nio.ByteBuffer;
import java.time.Duration;
import java.time.Instant;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;

/**
 * The anchor for orders-revenue: the same one-minute revenue windows per product, written the way a Kafka Streams
 * user would write them (groupBy the product, through a repartition topic, a tumbling window with a grace,
 * suppressed until it closes, exactly_once_v2, two stream threads), over the same pre-filled topic. Event time is
 * the order's ordered_at. Prints one JSON line: records seen, seconds from RUNNING to the last record, and how many
 * records the window dropped as late (the tasks' dropped-records-total).
 *
 * Arguments: brokers topic application-id output-topic grace-ms expected-records state-dir.
 */
public class KStreamsRevenue {
  /** The order's ordered_at, as a plain Kafka Streams user would extract it (no JSON library: a field scan). */
  public static final class OrderTime implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      String at = field((String) record.value(), "ordered_at");
      return at == null ? record.timestamp() : Instant.parse(at).toEpochMilli();
    }
  }

  static String field(String json, String name) {
    int i = json.indexOf("\"" + name + "\":");
    if (i < 0) return null;
    int start = i + name.length() + 3;
    if (json.charAt(start) == '"') return json.substring(start + 1, json.indexOf('"', start + 1));
    int end = start;
    while (end < json.length() && ",}".indexOf(json.charAt(end)) < 0) end++;
    return json.substring(start, end);
  }

  /** (orders, revenue in cents) as 16 bytes. */
  static final class Totals {
    final long orders;
    final long cents;
    Totals(long orders, long cents) { this.orders = orders; this.cents = cents; }
  }

  static final Serde<Totals> TOTALS = Serdes.serdeFrom(
      (Serializer<Totals>) (topic, t) -> ByteBuffer.allocate(16).putLong(t.orders).putLong(t.cents).array(),
      (Deserializer<Totals>) (topic, b) -> { ByteBuffer buf = ByteBuffer.wrap(b); return new Totals(buf.getLong(), buf.getLong()); });

  public static void main(String[] args) throws Exception {
    String brokers = args[0], topic = args[1], appId = args[2], output = args[3];
    long graceMs = Long.parseLong(args[4]);
    long expected = Long.parseLong(args[5]);
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
    p.put(StreamsConfig.STATE_DIR_CONFIG, args[6]);
    p.put(StreamsConfig.DEFAULT_TIMESTAMP_EXTRACTOR_CLASS_CONFIG, OrderTime.class);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    // Tuned as its users would for throughput: a larger record cache, the default commit interval of EOS (100 ms).
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 64L * 1024 * 1024);

    AtomicLong seen = new AtomicLong();
    AtomicLong lastAt = new AtomicLong();
    CountDownLatch all = new CountDownLatch(1);
    StreamsBuilder b = new StreamsBuilder();
    b.stream(topic, Consumed.with(Serdes.String(), Serdes.String()))
        .peek((k, v) -> {
          lastAt.set(System.nanoTime());
          if (seen.incrementAndGet() == expected) all.countDown();
        })
        .map((k, v) -> {
          long quantity = Long.parseLong(field(v, "quantity"));
          long cents = Math.round(Double.parseDouble(field(v, "price")) * 100);
          return KeyValue.pair(field(v, "product"), new Totals(1, quantity * cents));
        })
        .groupByKey(Grouped.with("by-product", Serdes.String(), TOTALS))
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofMillis(graceMs)))
        .aggregate(() -> new Totals(0, 0), (k, v, agg) -> new Totals(agg.orders + v.orders, agg.cents + v.cents), Materialized.with(Serdes.String(), TOTALS))
        .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
        .toStream()
        .map((w, t) -> KeyValue.pair(w.key() + "@" + w.window().start(), t.orders + "," + t.cents))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));

    KafkaStreams streams = new KafkaStreams(b.build(), p);
    AtomicLong runningAt = new AtomicLong();
    streams.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) runningAt.compareAndSet(0, System.nanoTime());
      if (now == KafkaStreams.State.ERROR) all.countDown();
    });
    streams.setUncaughtExceptionHandler(e -> {
      e.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    long started = System.nanoTime();
    streams.start();
    all.await(Long.parseLong(System.getProperty("anchor.timeoutSeconds", "900")), TimeUnit.SECONDS);
    boolean done = seen.get() >= expected && streams.state() != KafkaStreams.State.ERROR;
    double dropped = 0;
    for (Map.Entry<MetricName, ? extends Metric> m : streams.metrics().entrySet()) {
      if (m.getKey().name().equals("dropped-records-total") && m.getKey().group().equals("stream-task-metrics")) {
        dropped += ((Number) m.getValue().metricValue()).doubleValue();
      }
    }
    long from = runningAt.get() == 0 ? started : runningAt.get();
    System.out.printf("{\"records\":%d,\"seconds\":%.3f,\"seconds_from_start\":%.3f,\"dropped_late\":%d,\"complete\":%b}%n",
        seen.get(), (lastAt.get() - from) / 1e9, (lastAt.get() - started) / 1e9, (long) dropped, done);
    streams.close(Duration.ofSeconds(30));
  }
}
