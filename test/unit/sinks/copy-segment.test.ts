import assert from 'node:assert/strict';
import { encodeCopyRow } from '../../../pipeline/codec/copy-text.ts';
import type { StreamRecord } from '../../../pipeline/records.ts';
import { CopyRowsBuilder, encodeRows, filterSegment, keyField, keyHash, segmentOf, type CopySegment } from '../../../pipeline/sinks/copy-segment.ts';
import { firstOfEachKey, lastOfEachKey, Rows } from '../../../pipeline/sinks/postgres-copy.ts';

const rec = (partition: number, offset: number, value: unknown): StreamRecord => ({
  topic: 't', partition, offset, timestamp: undefined, key: null, rawKey: null, headers: undefined, raw: null, value,
});

const line = (s: { text: Buffer; ends: Uint32Array }, i: number) => s.text.subarray(i === 0 ? 0 : s.ends[i - 1], s.ends[i]).toString();

describe('COPY segments', () => {
  it('encodes a batch into one buffer with each line\'s end in bytes, non-ASCII included', () => {
    const records = [rec(0, 0, ['a', 1]), rec(0, 1, ['Crème 寿司 🍮', 2]), rec(1, 0, ['tab\there', null])];
    const e = encodeRows(records, (r) => r.value as string[], 0, () => assert.fail('nothing is rejected'));
    assert.equal(e.text.toString(), 'a\t1\nCrème 寿司 🍮\t2\ntab\\there\t\\N\n');
    assert.deepEqual([0, 1, 2].map((i) => line(e, i)), ['a\t1\n', 'Crème 寿司 🍮\t2\n', 'tab\\there\t\\N\n']);
    assert.equal(e.ends[2], e.text.length);
    assert.deepEqual([...e.keyHashes!], ['a', 'Crème 寿司 🍮', 'tab\\there'].map(keyHash), 'the hash of each key as COPY text');
    assert.deepEqual([0, 1, 2].map((i) => keyField(e, 0, i).toString()), ['a', 'Crème 寿司 🍮', 'tab\\there']);
    assert.deepEqual([0, 1, 2].map((i) => keyField(e, 1, i).toString()), ['1', '2', '\\N'], 'the last field, without the newline');
    assert.deepEqual(e.rows, records);
  });

  it('rejects what COPY cannot carry, and a row function that throws, and keeps the rest in order', () => {
    const rejected: [number, string][] = [];
    const records = [rec(0, 0, ['ok']), rec(0, 1, ['nul\u0000']), rec(0, 2, ['lone \ud800']), rec(0, 3, 'throw'), rec(0, 4, [Number.NaN]), rec(0, 5, ['last'])];
    const e = encodeRows(records, (r) => {
      if (r.value === 'throw') throw new Error('no row');
      return r.value as string[];
    }, -1, (r, reason) => rejected.push([r.offset, reason]));
    assert.deepEqual(rejected, [[1, 'unencodable'], [2, 'unencodable'], [3, 'map-failed'], [4, 'unencodable']]);
    assert.equal(e.text.toString(), 'ok\nlast\n');
    assert.deepEqual(e.rows.map((r) => r.offset), [0, 5]);
    assert.equal(e.keyHashes, undefined);
  });

  it('filters rows by their record (a revoked partition), keeping lines, keys and records together', () => {
    const records = [rec(0, 0, ['a']), rec(1, 0, ['é']), rec(0, 1, ['c']), rec(1, 1, ['d'])];
    const s = segmentOf(encodeRows(records, (r) => r.value as string[], 0, () => undefined));
    const kept = filterSegment(s, (r) => r.partition === 1)!;
    assert.equal(kept.text.toString(), 'é\nd\n');
    assert.deepEqual([...kept.ends], [3, 5]);
    assert.deepEqual([...kept.keyHashes!], ['é', 'd'].map(keyHash));
    assert.deepEqual([kept.record(0), kept.record(1)], [records[1], records[3]]);
    assert.equal(filterSegment(s, () => true), s, 'nothing dropped: the same segment');
    assert.equal(filterSegment(s, () => false), undefined);
  });

  it('keeps the first row of each key across a flush\'s segments, telling apart different keys with the same hash', () => {
    // key-901258 and key-1540052 have the same FNV-1a hash (found by search): only their bytes tell them apart.
    assert.equal(keyHash('key-901258'), keyHash('key-1540052'));
    const seg = (keys: string[]): CopySegment => segmentOf(encodeRows(keys.map((k, i) => rec(0, i, [i, k])), (r) => r.value as string[], 1, () => assert.fail('nothing is rejected')));
    const a = seg(['key-901258', 'x', 'key-1540052', 'x', 'y']);
    const b = seg(['y', 'key-1540052', 'z', 'key-901258', 'z']);
    const repeats: string[] = [];
    const kept = firstOfEachKey(new Rows([a, b]), (s, i) => repeats.push(`${s === a ? 'a' : 'b'}${i}`));
    assert.deepEqual([...kept], [0, 1, 2, 4, 7]);
    assert.deepEqual(repeats, ['a3', 'b0', 'b1', 'b3', 'b4']);
  });

  it('keeps the last row of each key for an upsert, and for each row the one before it of its key (written if it is rejected)', () => {
    const seg = (keys: string[], from: number): CopySegment => segmentOf(encodeRows(keys.map((k, i) => rec(0, from + i, [k, from + i])), (r) => r.value as string[], 0, () => assert.fail('nothing is rejected')));
    const a = seg(['key-901258', 'x', 'key-1540052', 'x', 'y'], 0);
    const b = seg(['y', 'key-1540052', 'z', 'key-901258', 'x'], 5);
    const { kept, instead } = lastOfEachKey(new Rows([a, b]));
    assert.deepEqual([...kept], [5, 6, 7, 8, 9], 'ascending: the last y, key-1540052, z, key-901258 and x');
    assert.deepEqual([9, 3, 1, 8, 0, 6, 2, 5, 4, 7].map((g) => instead!(g)), [3, 1, -1, 0, -1, 2, -1, 4, -1, -1], 'each row\'s earlier row of the same key');
  });

  it('hashes and compares a composite key (adjacent columns) as one, on both the encoder\'s and the direct reader\'s paths', () => {
    const records = [rec(0, 0, ['a', 'b\tc', 1]), rec(0, 1, ['a\tb', 'c', 2]), rec(0, 2, ['a', 'b\tc', 3])];
    const e = encodeRows(records, (r) => r.value as string[], 0, () => assert.fail('nothing is rejected'), 2);
    assert.deepEqual([0, 1, 2].map((i) => keyField(e, 0, i, 2).toString()), ['a\tb\\tc', 'a\\tb\tc', 'a\tb\\tc'], 'two fields with the tab between them; a value\'s own tab is escaped');
    assert.deepEqual([...e.keyHashes!], [e.keyHashes![0], e.keyHashes![1], e.keyHashes![0]]);
    assert.notEqual(e.keyHashes![0], e.keyHashes![1]);
    const s = segmentOf(e);
    assert.deepEqual([...firstOfEachKey(new Rows([s]), () => undefined)], [0, 1], 'the third row repeats the first key');
    // appendFields (the direct reader's) hashes the same fields to the same number.
    const b = new CopyRowsBuilder(0, 4, 64, 2);
    const src = Buffer.from('xab');
    b.appendFields(src, Int32Array.of(1, 2), Int32Array.of(2, 3));
    assert.equal(b.finish().keyHashes![0], keyHash('a\tb'));
  });

  it('builds one batch\'s rows chunk after chunk, growing past its first sizes, as one pass would', () => {
    const values = Array.from({ length: 300 }, (_, i) => [`k${i}`, i % 7 === 0 ? `Crème 寿司 🍮 ${i}` : `plain\t${i}`, i]);
    const records = values.map((v, i) => rec(i % 3, i, v));
    const toValues = (r: StreamRecord) => r.value as string[];
    const b = new CopyRowsBuilder(0, 2, 16); // far too small: rows, bytes and key hashes all grow
    const kept: StreamRecord[] = [];
    for (let from = 0; from < records.length; from += 37) kept.push(...b.append(records.slice(from, from + 37), toValues, () => assert.fail('nothing is rejected')));
    const once = encodeRows(records, toValues, 0, () => assert.fail('nothing is rejected'));
    const built = b.finish();
    assert.equal(b.length, 300);
    assert.equal(built.text.toString(), once.text.toString());
    assert.ok(built.text.toString().includes('Crème 寿司 🍮 7\t7\n'));
    assert.deepEqual([...built.ends], [...once.ends]);
    let at = 0;
    assert.deepEqual([...built.ends], values.map((v) => (at += Buffer.byteLength(encodeCopyRow(v), 'utf8'))), 'each line\'s end, counted independently');
    assert.equal(built.ends[299], built.text.length, 'line ends in bytes, non-ASCII lines included');
    assert.deepEqual([...built.keyHashes!], values.map((v) => keyHash(v[0] as string)));
    assert.deepEqual(kept, records);
  });
});
