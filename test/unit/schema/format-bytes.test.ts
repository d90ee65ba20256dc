import assert from 'node:assert/strict';
import { dateTimeBytes, FAST_DATE_TIME, uuidBytes } from '../../../pipeline/schema/format-bytes.ts';
import { formatCheck, isUuid, validateOrder } from '../../../pipeline/schema/validator.ts';
import { prng } from '../../../topologies/order-factory.ts';

/** Seeds, and mutants of them: 1-3 characters replaced, inserted or deleted, from the characters that matter. */
function variants(seeds: string[], alphabet: string, count: number, seed: number): string[] {
  const rand = prng(seed);
  const out = [...seeds];
  while (out.length < count) {
    const s = [...seeds[Math.floor(rand() * seeds.length)]];
    for (let e = 1 + Math.floor(rand() * 3); e > 0; e--) {
      const at = Math.floor(rand() * (s.length + 1));
      const c = alphabet[Math.floor(rand() * alphabet.length)];
      const op = rand();
      if (op < 0.5) s.splice(at, 1, c);
      else if (op < 0.75) s.splice(at, 0, c);
      else s.splice(at, 1);
    }
    out.push(s.join(''));
  }
  return out;
}

/** The bytes check on each value, inside a larger buffer so that it must not read past the end it is given. */
function sameAs(bytesCheck: (b: Uint8Array, s: number, e: number) => boolean, stringCheck: (s: string) => boolean, values: string[]): number {
  let valid = 0;
  for (const v of values) {
    const b = Buffer.from(`"${v}0000:00Z"`, 'latin1');
    assert.equal(bytesCheck(b, 1, 1 + v.length), stringCheck(v), JSON.stringify(v));
    if (stringCheck(v)) valid++;
  }
  return valid;
}

describe('format checks on bytes', () => {
  it('are the ones the direct reader gets for the ajv formats they mirror', () => {
    validateOrder();
    assert.equal(formatCheck('uuid'), uuidBytes);
    assert.equal(formatCheck('date-time'), dateTimeBytes);
    const email = formatCheck('email')!;
    const b = Buffer.from('x a@b.io y');
    assert.equal(email(b, 2, 8), true, 'any other format checks the string, with ajv\'s function');
    assert.equal(email(b, 0, 8), false);
  });

  it('uuid: the same answer as isUuid on 20,000 ids and mutants', () => {
    const seeds = ['0190c0de-0000-7000-8000-000000000001', '0190C0DE-ABCD-7EF0-8000-00000000000A', 'urn:uuid:0190c0de-0000-7000-8000-000000000001',
      'URN:UUID:0190c0de-0000-7000-8000-000000000001', 'Urn:Uuid:ffffffff-ffff-ffff-ffff-ffffffffffff'];
    const valid = sameAs(uuidBytes, isUuid, variants(seeds, '0123456789abcdefgABCDEFG-:urnUID ', 20_000, 1));
    assert.ok(valid > 1000 && valid < 19_000, `${valid} valid`);
  });

  it('date-time: the same answer as ajv-formats\' fast regex on 40,000 times and mutants', () => {
    const seeds = ['2026-11-30T06:00:00.123Z', '2026-11-30t06:00:00z', '2026-11-30T23:59:60+01:00', '2026-11-30T06:00:00-0130',
      '2026-11-30T06:00:00+01', '1999-19-39T29:59:59.000000001Z', '2026-11-30T24:00:00Z', '2026-11-30 06:00:00Z'];
    const valid = sameAs(dateTimeBytes, (s) => FAST_DATE_TIME.test(s), variants(seeds, '0123456789-:tTzZ+.. 6', 40_000, 2));
    assert.ok(valid > 2000 && valid < 38_000, `${valid} valid`);
  });
});
