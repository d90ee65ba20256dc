import assert from 'node:assert/strict';
import { CopyEncodeError, decodeCopyRow, encodeCopyRow, encodeCopyValue, escapeCopyText } from '../../../pipeline/codec/copy-text.ts';

describe('COPY text encoder', () => {
  it('escapes backslash, tab, newline and carriage return, and nothing else', () => {
    assert.equal(escapeCopyText('a\\b'), 'a\\\\b');
    assert.equal(escapeCopyText('a\tb'), 'a\\tb');
    assert.equal(escapeCopyText('a\nb'), 'a\\nb');
    assert.equal(escapeCopyText('a\rb'), 'a\\rb');
    assert.equal(escapeCopyText('\\.'), '\\\\.');
    assert.equal(escapeCopyText('"quotes" \'and\' Crème 寿司 🍮'), '"quotes" \'and\' Crème 寿司 🍮');
    assert.equal(escapeCopyText('\\N'), '\\\\N', 'the text \\N is not NULL');
  });

  it('rejects NUL, which a Postgres text value cannot hold', () => {
    assert.throws(() => escapeCopyText('a\u0000b'), CopyEncodeError);
  });

  it('writes NULL as \\N and refuses non-finite numbers', () => {
    assert.equal(encodeCopyValue(null), '\\N');
    assert.equal(encodeCopyValue(undefined), '\\N');
    assert.equal(encodeCopyValue(12.5), '12.5');
    assert.equal(encodeCopyValue(10n), '10');
    assert.throws(() => encodeCopyValue(Number.NaN), CopyEncodeError);
    assert.throws(() => encodeCopyValue(Infinity), CopyEncodeError);
  });

  it('encodes a row as tab-separated columns ending in a newline', () => {
    assert.equal(encodeCopyRow(['x', 1, null, 'a\tb']), 'x\t1\t\\N\ta\\tb\n');
  });

  it('decodes a line back to the values it was encoded from, telling NULL from the text \\N', () => {
    const row = ['tab\there', 'line\nbreak', 'cr\r', 'back\\slash\\', '\\N', null, 'Crème 寿司 🍮', ''];
    assert.deepEqual(decodeCopyRow(encodeCopyRow(row)), row);
  });
});
