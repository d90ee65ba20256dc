import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { csvObject, numericProperties, parseNdjsonLine, readFileRecords, splitCsv, type FileRecord } from '../../../pipeline/sources/file-records.ts';
import { orderSchema } from '../../../pipeline/schema/validator.ts';

async function records(text: string, format: 'csv' | 'ndjson', from = 1): Promise<FileRecord[]> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'file-records-')), `f.${format}`);
  fs.writeFileSync(file, text);
  const out: FileRecord[] = [];
  for await (const r of readFileRecords(file, format, from, numericProperties(orderSchema()))) out.push(r);
  fs.rmSync(path.dirname(file), { recursive: true });
  return out;
}

describe('CSV and NDJSON file records', () => {
  it('splits CSV by RFC 4180: quoted commas, doubled quotes, empty fields', () => {
    assert.deepEqual(splitCsv('a,"b, c","say ""hi""",,e'), ['a', 'b, c', 'say "hi"', '', 'e']);
    assert.equal(splitCsv('a,"open'), undefined);
    assert.throws(() => splitCsv('a,b"c'), /quote inside an unquoted field/);
    assert.throws(() => splitCsv('"a"b'), /after a closing quote/);
  });

  it('types CSV fields from the schema: numbers where the schema wants them, empty = absent', () => {
    const numeric = numericProperties(orderSchema());
    assert.deepEqual([...numeric].sort(), ['order_number', 'price', 'quantity']);
    assert.deepEqual(csvObject(['order_number', 'product', 'quantity', 'price'], ['7', '42', 'two', ''], numeric),
      { order_number: 7, product: '42', quantity: 'two' });
    assert.throws(() => csvObject(['a', 'b'], ['1'], numeric), /1 fields where the header has 2/);
  });

  it('reads a CSV file with line numbers, reports bad lines and resumes from a line', async () => {
    const text = 'order_number,product\r\n1,a\n\n2,"b, c"\n3,"x\n4,d\n';
    const all = await records(text, 'csv');
    assert.deepEqual(all.map((r) => [r.line, r.nextLine, r.ok]), [[2, 3, true], [4, 5, true], [5, 6, false], [6, 7, true]]);
    const bad = all[2];
    assert.ok(!bad.ok && bad.reason === 'malformed-csv' && /^line 5: /.test(bad.message));
    assert.deepEqual((await records(text, 'csv', 5)).map((r) => r.line), [5, 6]);
  });

  it('reads NDJSON lines: objects, malformed JSON and non-objects each with their line', async () => {
    assert.deepEqual(parseNdjsonLine('{"a":1}'), { ok: true, value: { a: 1 } });
    assert.equal((parseNdjsonLine('[1]') as { reason: string }).reason, 'schema');
    const all = await records('{"a":1}\n{"a":\n\n7\n', 'ndjson');
    assert.deepEqual(all.map((r) => [r.line, r.ok ? 'ok' : r.reason]), [[1, 'ok'], [2, 'malformed-json'], [4, 'schema']]);
  });
});
