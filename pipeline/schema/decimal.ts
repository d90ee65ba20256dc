/**
 * Exact decimal checks on JSON numbers. JSON.parse gives a double; String(double) is the shortest decimal that
 * reads back as that double, which is the decimal the producer wrote for any value with up to 15 significant
 * digits. Deciding on that text avoids floating-point division: 1.1 / 0.01 is 110.00000000000001 in binary.
 */
export interface Decimal {
  digits: bigint; // the value is digits * 10^-scale
  scale: number;
}

export function toDecimal(n: number): Decimal {
  const text = String(n);
  const e = text.indexOf('e');
  const mantissa = e < 0 ? text : text.slice(0, e);
  const exponent = e < 0 ? 0 : Number(text.slice(e + 1));
  const dot = mantissa.indexOf('.');
  const fraction = dot < 0 ? '' : mantissa.slice(dot + 1);
  const digits = BigInt(dot < 0 ? mantissa : mantissa.slice(0, dot) + fraction);
  const scale = fraction.length - exponent;
  return scale >= 0 ? { digits, scale } : { digits: digits * 10n ** BigInt(-scale), scale: 0 };
}

/** Number of digits after the decimal point, exactly (0.07 -> 2, 1.1 -> 1, 1e-7 -> 7). */
export function decimalPlaces(n: number): number {
  const text = String(n);
  if (text.indexOf('e') < 0) {
    const dot = text.indexOf('.');
    return dot < 0 ? 0 : text.length - dot - 1;
  }
  return Math.max(0, toDecimal(n).scale);
}

const POW10 = Array.from({ length: 16 }, (_, k) => 10 ** k);

/** Steps come from schemas: a handful of values, each worked out once. */
const steps = new Map<number, Decimal>();

/** Whether value is an integer multiple of step, decided in decimal arithmetic. */
export function isMultipleOf(value: number, step: number): boolean {
  if (!Number.isFinite(value) || !Number.isFinite(step) || step <= 0) return false;
  let s = steps.get(step);
  if (!s) steps.set(step, (s = toDecimal(step)));
  // The common case step = 10^-k (0.01): a multiple iff it has at most k decimal places, no BigInt.
  if (s.digits === 1n) {
    // Faster still, without printing the number: a value the producer wrote with at most k decimals is the double
    // nearest d / 10^k, and dividing the integer d by 10^k (both exact below 2^53) gives exactly that double back.
    // When it does not come back the exact check decides.
    const p = POW10[s.scale];
    if (p !== undefined && Math.abs(value) * p < 2 ** 52 && Math.round(value * p) / p === value) return true;
    return decimalPlaces(value) <= s.scale;
  }
  const v = toDecimal(value);
  const scale = Math.max(v.scale, s.scale);
  const vd = v.digits * 10n ** BigInt(scale - v.scale);
  const sd = s.digits * 10n ** BigInt(scale - s.scale);
  return vd % sd === 0n;
}
