import assert from 'node:assert/strict';
import { JsonDeserializer, SchemaRegistryClient, valueSerializer, valueSubject } from '../../../pipeline/schema/registry.ts';
import { compileSchema } from '../../../pipeline/schema/validator.ts';
import { decodeWireFormat, encodeWireFormat } from '../../../pipeline/schema/wire-format.ts';
import { carSchema, validateCar, type Car } from '../../../topologies/cars-producer.ts';
import { startRegistryStub, type RegistryStub } from '../../helpers/schema-registry.ts';

// Against documented REST responses served by a local stub (see test/helpers/schema-registry.ts), not a real registry.
describe('schema registry client (against documented Confluent REST responses)', () => {
  let stub: RegistryStub;
  beforeEach(async () => { stub = await startRegistryStub(); });
  afterEach(async () => { await stub.close(); });
  const car: Car = { id: '0f8fad5b-d9cb-469f-a165-70867728950e', make: 'Toyota', model: 'Corolla', year: 2019 };

  it('registers the schema under <topic>-value and writes the wire format with its id', async () => {
    const client = new SchemaRegistryClient(stub.url);
    const ser = await valueSerializer('cars', carSchema(), client);
    assert.equal(ser.schemaId, 1);
    assert.ok(stub.requests.includes('POST /subjects/cars-value/versions'));
    const d = decodeWireFormat(ser.encode(JSON.stringify(car)));
    assert.deepEqual({ id: d?.schemaId, value: JSON.parse(d!.payload.toString()) as Car }, { id: 1, value: car });
    assert.equal((await valueSerializer('cars', carSchema(), client)).schemaId, 1, 'the same schema keeps its id');
  });

  it('fetches each schema id once and validates with it; unknown ids and bad values are record errors', async () => {
    const strict = { ...carSchema(), properties: { ...(carSchema() as { properties: object }).properties, year: { type: 'integer', minimum: 2020 } } };
    const id = stub.add(valueSubject('cars'), strict);
    const de = new JsonDeserializer<Car>(validateCar(), new SchemaRegistryClient(stub.url), valueSubject('cars'));
    const ok = await de.decode(encodeWireFormat(id, Buffer.from(JSON.stringify({ ...car, year: 2021 }))));
    assert.deepEqual(ok, { ok: true, value: { ...car, year: 2021 }, schemaId: id });
    const old = await de.decode(encodeWireFormat(id, Buffer.from(JSON.stringify(car))));
    assert.ok(!old.ok && old.reason === 'schema' && /year must be >= 2020/.test(old.message), 'validated by the registry schema, not the local one');
    await de.decode(encodeWireFormat(id, Buffer.from('{')));
    assert.equal(stub.requests.filter((r) => r === `GET /schemas/ids/${id}`).length, 1, 'fetched once, then cached');
    const unknown = await de.decode(encodeWireFormat(99, Buffer.from(JSON.stringify(car))));
    assert.deepEqual(unknown.ok ? undefined : unknown.reason, 'unknown-schema');
  });

  it('validates plain JSON against the latest version of the subject, or the local schema when there is none', async () => {
    const local = new JsonDeserializer<Car>(compileSchema<Car>(carSchema()), new SchemaRegistryClient(stub.url), valueSubject('nothing'));
    assert.equal((await local.decode(Buffer.from(JSON.stringify(car)))).ok, true);
    const strict = { ...carSchema(), required: ['id', 'make', 'model', 'year', 'color'], properties: { ...(carSchema() as { properties: object }).properties, color: { type: 'string' } } };
    stub.add(valueSubject('cars'), strict);
    const latest = new JsonDeserializer<Car>(validateCar(), new SchemaRegistryClient(stub.url), valueSubject('cars'));
    const r = await latest.decode(Buffer.from(JSON.stringify(car)));
    assert.ok(!r.ok && /missing required property "color"/.test(r.message));
    assert.ok(stub.requests.includes('GET /subjects/cars-value/versions/latest'));
  });

  it('fails with a clear, retriable error when the registry cannot be reached', async () => {
    const down = new SchemaRegistryClient('http://127.0.0.1:9');
    await assert.rejects(down.register('cars-value', carSchema()), (err: Error & { retriable?: boolean }) =>
      /registering the schema under cars-value at http:\/\/127.0.0.1:9 failed/.test(err.message) && err.retriable === true);
  });
});
