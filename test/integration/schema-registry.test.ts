import assert from 'node:assert/strict';
import { JsonDeserializer, SchemaRegistryClient, valueSerializer, valueSubject } from '../../pipeline/schema/registry.ts';
import { compileSchema } from '../../pipeline/schema/validator.ts';
import { decodeWireFormat, encodeWireFormat } from '../../pipeline/schema/wire-format.ts';
import { carSchema, validateCar, type Car } from '../../topologies/cars-producer.ts';
import { unique } from '../helpers/infra.ts';
import { startRegistry, type Registry } from '../helpers/schema-registry.ts';

// Against the real registry (Apicurio's Confluent API), through the tests' recording proxy; each test its own subjects.
describe('schema registry client (a real registry)', () => {
  let stub: Registry;
  let cars: string;
  beforeEach(async () => { stub = await startRegistry(); cars = unique('cars'); });
  afterEach(async () => { await stub.close(); });
  const car: Car = { id: '0f8fad5b-d9cb-469f-a165-70867728950e', make: 'Toyota', model: 'Corolla', year: 2019 };

  it('registers the schema under <topic>-value and writes the wire format with its id', async () => {
    const client = new SchemaRegistryClient(stub.url);
    const ser = await valueSerializer(cars, carSchema(), client);
    assert.ok(Number.isInteger(ser.schemaId) && ser.schemaId! > 0);
    assert.ok(stub.requests.includes(`POST /subjects/${cars}-value/versions`));
    const d = decodeWireFormat(ser.encode(JSON.stringify(car)));
    assert.deepEqual({ id: d?.schemaId, value: JSON.parse(d!.payload.toString()) as Car }, { id: ser.schemaId, value: car });
    assert.equal((await valueSerializer(cars, carSchema(), client)).schemaId, ser.schemaId, 'the same schema keeps its id');
  });

  it('fetches each schema id once and validates with it; unknown ids and bad values are record errors', async () => {
    const strict = { ...carSchema(), properties: { ...(carSchema() as { properties: object }).properties, year: { type: 'integer', minimum: 2020 } } };
    const id = await stub.register(valueSubject(cars), { ...strict, description: cars });
    const de = new JsonDeserializer<Car>(validateCar(), new SchemaRegistryClient(stub.url), valueSubject(cars));
    const ok = await de.decode(encodeWireFormat(id, Buffer.from(JSON.stringify({ ...car, year: 2021 }))));
    assert.deepEqual(ok, { ok: true, value: { ...car, year: 2021 }, schemaId: id });
    const old = await de.decode(encodeWireFormat(id, Buffer.from(JSON.stringify(car))));
    assert.ok(!old.ok && old.reason === 'schema' && /year must be >= 2020/.test(old.message), 'validated by the registry schema, not the local one');
    await de.decode(encodeWireFormat(id, Buffer.from('{')));
    assert.equal(stub.requests.filter((r) => r === `GET /schemas/ids/${id}`).length, 1, 'fetched once, then cached');
    const unknown = await de.decode(encodeWireFormat(2_000_000_000, Buffer.from(JSON.stringify(car))));
    assert.deepEqual(unknown.ok ? undefined : unknown.reason, 'unknown-schema');
  });

  it('validates plain JSON against the latest version of the subject, or the local schema when there is none', async () => {
    const local = new JsonDeserializer<Car>(compileSchema<Car>(carSchema()), new SchemaRegistryClient(stub.url), valueSubject(unique('nothing')));
    assert.equal((await local.decode(Buffer.from(JSON.stringify(car)))).ok, true);
    const strict = { ...carSchema(), required: ['id', 'make', 'model', 'year', 'color'], properties: { ...(carSchema() as { properties: object }).properties, color: { type: 'string' } } };
    await stub.register(valueSubject(cars), strict);
    const latest = new JsonDeserializer<Car>(validateCar(), new SchemaRegistryClient(stub.url), valueSubject(cars));
    const r = await latest.decode(Buffer.from(JSON.stringify(car)));
    assert.ok(!r.ok && /missing required property "color"/.test(r.message));
    assert.ok(stub.requests.includes(`GET /subjects/${cars}-value/versions/latest`));
  });

  it('a 404 without the registry\'s "not found" code (a wrong URL) is an error that names the setting, not an unknown schema', async () => {
    const id = await stub.register(valueSubject(cars), { ...carSchema(), description: `${cars} wrong url` });
    const wrong = new JsonDeserializer<Car>(validateCar(), new SchemaRegistryClient(`${stub.url}/not-the-api`), valueSubject(cars));
    await assert.rejects(wrong.decode(encodeWireFormat(id, Buffer.from(JSON.stringify(car)))), (err: Error & { retriable?: boolean }) =>
      /HTTP 404 without a registry error code \(40403\): is SCHEMA_REGISTRY_URL the registry's Confluent-compatible API/.test(err.message) && err.retriable === false);
    assert.ok(stub.requests.includes(`GET /not-the-api/schemas/ids/${id}`));
  });

  it('fails with a clear, retriable error when the registry cannot be reached', async () => {
    const down = new SchemaRegistryClient('http://127.0.0.1:9');
    await assert.rejects(down.register('cars-value', carSchema()), (err: Error & { retriable?: boolean }) =>
      /registering the schema under cars-value at http:\/\/127.0.0.1:9 failed/.test(err.message) && err.retriable === true);
  });
});
