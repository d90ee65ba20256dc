import assert from 'node:assert/strict';
import { decodeWireFormat, encodeWireFormat, hasWireFormat } from '../../../pipeline/schema/wire-format.ts';

describe('Confluent wire format', () => {
  it('writes magic byte 0, the schema id big-endian in 4 bytes, then the payload', () => {
    const out = encodeWireFormat(0x01020304, Buffer.from('{"a":1}'));
    assert.deepEqual([...out.subarray(0, 5)], [0, 1, 2, 3, 4]);
    assert.equal(out.subarray(5).toString(), '{"a":1}');
  });

  it('reads back what it wrote, for small and large ids', () => {
    for (const id of [0, 1, 255, 65_536, 2_147_483_647]) {
      const d = decodeWireFormat(encodeWireFormat(id, Buffer.from('[]')));
      assert.deepEqual({ id: d?.schemaId, payload: d?.payload.toString() }, { id, payload: '[]' });
    }
  });

  it('tells plain JSON from the wire format, and rejects ids that do not fit', () => {
    assert.equal(hasWireFormat(Buffer.from('{"a":1}')), false);
    assert.equal(decodeWireFormat(Buffer.from([0, 0, 0])), undefined, 'too short for a header');
    assert.throws(() => encodeWireFormat(-1, Buffer.alloc(0)), /does not fit/);
    assert.throws(() => encodeWireFormat(2 ** 31, Buffer.alloc(0)), /does not fit/);
  });
});
