import assert from 'node:assert/strict';
import { decimalPlaces, isMultipleOf } from '../../../pipeline/schema/decimal.ts';
import { isUuid, validateOrder } from '../../../pipeline/schema/validator.ts';

const valid = {
  order_id: '0190a3c4-7e2b-7a10-8000-000000000001', order_number: 1, product: 'Lamp', quantity: 1, price: 19.99,
  ordered_at: '2026-11-28T10:00:00Z',
};

describe('order schema', () => {
  const validate = validateOrder();

  it('accepts a valid order, including prices like 0.07 and 1.1 that floating-point division gets wrong', () => {
    for (const price of [0, 0.07, 1.1, 19.99, 0.29, 4.35, 1234567890.12]) assert.ok(validate({ ...valid, price }), `${price}: ${validate.errorText()}`);
  });

  it('rejects more than two decimals, decided exactly', () => {
    for (const price of [1.005, 0.001, 12.345, 1e-7]) {
      assert.equal(validate({ ...valid, price }), false, String(price));
      assert.match(validate.errorText(), /\/price/);
    }
  });

  const cases: [string, object, RegExp][] = [
    ['a missing field', { ...valid, product: undefined }, /missing required property "product"/],
    ['an extra field', { ...valid, coupon: 'x' }, /unexpected property "coupon"/],
    ['a quantity below 1', { ...valid, quantity: 0 }, /\/quantity must be >= 1/],
    ['a quantity of the wrong type', { ...valid, quantity: '2' }, /\/quantity must be integer/],
    ['a fractional quantity', { ...valid, quantity: 1.5 }, /\/quantity must be integer/],
    ['a negative price', { ...valid, price: -1 }, /\/price must be >= 0/],
    ['an order_id that is not a UUID', { ...valid, order_id: 'abc' }, /\/order_id must match format "uuid"/],
    ['a date that is not a date-time', { ...valid, ordered_at: 'yesterday' }, /\/ordered_at must match format "date-time"/],
    ['null', null as unknown as object, /must be object/],
    ['an array', [] as unknown as object, /must be object/],
  ];
  for (const [what, value, message] of cases) {
    it(`rejects ${what} with a message naming the field`, () => {
      const copy = JSON.parse(JSON.stringify(value)) as unknown;
      assert.equal(validate(copy), false);
      assert.match(validate.errorText(), message);
    });
  }
});

describe('exact decimals', () => {
  it('counts decimal places from the shortest decimal form', () => {
    assert.equal(decimalPlaces(0.07), 2);
    assert.equal(decimalPlaces(1.1), 1);
    assert.equal(decimalPlaces(100), 0);
    assert.equal(decimalPlaces(1e-7), 7);
    assert.equal(decimalPlaces(1.5e-5), 6);
    assert.equal(decimalPlaces(1e21), 0);
  });

  it('decides multipleOf in decimal for any step', () => {
    assert.ok(isMultipleOf(1.1, 0.01));
    assert.ok(isMultipleOf(0.3, 0.1));
    assert.ok(isMultipleOf(7.5, 2.5));
    assert.ok(!isMultipleOf(7.6, 2.5));
    assert.ok(!isMultipleOf(Number.NaN, 0.01));
  });

  /**
   * The oracle, independent of pipeline/schema/decimal.ts: decimal places of the number's shortest round-trip text
   * (what JSON and String() print), read off the text itself, mantissa and exponent.
   */
  const placesOfText = (v: number): number => {
    const [mantissa, exponent = '0'] = String(Math.abs(v)).split('e');
    const fraction = (mantissa.split('.')[1] ?? '').replace(/0+$/, '');
    return Math.max(0, fraction.length - Number(exponent));
  };

  it('the oracle reads decimal places off the text', () => {
    assert.deepEqual([1, 0.5, 0.07, 123.45, 1e-7, 1.25e-7, 1.5e21, 100].map(placesOfText), [0, 1, 2, 2, 7, 9, 0, 0]);
  });

  it('agrees with the decimal text of the number on 0.01, 0.001 and 1 for a million values', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 1_000_000; i++) {
      const kind = i % 4;
      const v = kind === 0 ? Math.floor(rnd() * 1e9) / 100 // 2 decimals, as prices are written
        : kind === 1 ? Math.floor(rnd() * 1e12) / 1000 // 3 decimals
          : kind === 2 ? (rnd() - 0.5) * 10 ** Math.floor(rnd() * 30 - 10) // any double, tiny to huge
            : Math.floor(rnd() * 1e6) / 100 + 1e-9; // just off a multiple
      for (const [step, k] of [[0.01, 2], [0.001, 3], [1, 0]] as const) {
        assert.equal(isMultipleOf(v, step), placesOfText(v) <= k, `${v} multipleOf ${step}`);
      }
    }
  });

  it('checks uuid exactly as the ajv-formats regex does', () => {
    const re = /^(?:urn:uuid:)?[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$/i;
    const cases = ['01a22990-8667-7000-bcb7-a1fdc801e287', '01A22990-8667-7000-BCB7-A1FDC801E287', 'urn:uuid:01a22990-8667-7000-bcb7-a1fdc801e287',
      'URN:UUID:01a22990-8667-7000-bcb7-a1fdc801e287', 'urn:uuid01a22990-8667-7000-bcb7-a1fdc801e287x', '01a22990-8667-7000-bcb7-a1fdc801e28',
      '01a22990-8667-7000-bcb7-a1fdc801e2877', '01a22990_8667-7000-bcb7-a1fdc801e287', '01a22990-8667-7000-bcb7-a1fdc801e28g', '', 'x'.repeat(45)];
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const alphabet = '0123456789abcdefABCDEFgG-:un ';
    for (let i = 0; i < 20_000; i++) {
      const base = cases[rnd(4)].split('');
      for (let k = rnd(3); k > 0; k--) base[rnd(base.length)] = alphabet[rnd(alphabet.length)];
      cases.push(base.join(''));
    }
    for (const c of cases) assert.equal(isUuid(c), re.test(c), JSON.stringify(c));
  });
});
