import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SaveMode;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.Trigger;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.from_json;

/**
 * The anchor a Spark user would write for orders-ingest: Structured Streaming on local[2], the Kafka source, the
 * JSON parsed against the order's schema, and each micro-batch appended to the table over JDBC (foreachBatch,
 * batchsize 10,000, reWriteBatchedInserts). Runs until stopped; the bench times the table.
 *
 * Arguments: brokers topic jdbc-url user password table checkpoint-dir.
 */
public class SparkIngest {
  public static void main(String[] args) throws Exception {
    String brokers = args[0], topic = args[1], url = args[2], user = args[3], password = args[4], table = args[5], checkpoint = args[6];
    SparkSession spark = SparkSession.builder().appName("orders-ingest-anchor").master("local[2]")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2").getOrCreate();
    spark.sparkContext().setLogLevel("WARN");
    StructType order = new StructType()
        .add("order_id", DataTypes.StringType).add("order_number", DataTypes.LongType).add("product", DataTypes.StringType)
        .add("quantity", DataTypes.IntegerType).add("price", DataTypes.createDecimalType(12, 2)).add("ordered_at", DataTypes.TimestampType);
    Dataset<Row> orders = spark.readStream().format("kafka")
        .option("kafka.bootstrap.servers", brokers).option("subscribe", topic).option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", "200000").load()
        .select(from_json(col("value").cast("string"), order).alias("o")).select("o.*")
        .filter(col("order_id").isNotNull());
    Properties jdbc = new Properties();
    jdbc.put("user", user);
    jdbc.put("password", password);
    jdbc.put("driver", "org.postgresql.Driver");
    jdbc.put("batchsize", "10000");
    jdbc.put("stringtype", "unspecified");
    String target = url + (url.contains("?") ? "&" : "?") + "reWriteBatchedInserts=true&stringtype=unspecified";
    StreamingQuery q = orders.writeStream().option("checkpointLocation", checkpoint).trigger(Trigger.ProcessingTime(0, TimeUnit.MILLISECONDS))
        .foreachBatch((VoidFunction2<Dataset<Row>, Long>) (batch, id) -> batch.write().mode(SaveMode.Append).jdbc(target, table, jdbc))
        .start();
    q.awaitTermination();
  }
}
