import assert from 'node:assert/strict';
import { TableCatchUp } from '../../../pipeline/runtime/table-catch-up.ts';

describe('table inputs read first', () => {
  it('holds a partition\'s stream inputs until every table input of it has reached its end, then names the paused ones', () => {
    const t = new TableCatchUp(new Set([0, 2]), 3);
    t.await(1, 0, -1, 100);
    t.await(1, 2, 40, 50);
    t.await(2, 0, 100, 100); // nothing to read: not held
    assert.equal(t.holds(1, 1), true);
    assert.equal(t.holds(1, 0), false, 'a table input itself is read');
    assert.equal(t.holds(2, 1), false);
    assert.equal(t.hold(1, 1), true);
    assert.equal(t.hold(1, 1), false, 'paused once');
    assert.equal(t.reached(1, 0, 99), undefined);
    assert.equal(t.reached(1, 0, 100), undefined, 'the other table input is still behind');
    assert.equal(t.holds(1, 1), true);
    assert.deepEqual(t.reached(1, 2, 50), [1]);
    assert.equal(t.holds(1, 1), false);
    assert.equal(t.waiting().size, 0);
  });

  it('holds nothing when every input is a table, and forgets dropped partitions', () => {
    const only = new TableCatchUp(new Set([0, 1]), 2);
    assert.equal(only.active, false);
    const t = new TableCatchUp(new Set([1]), 2);
    t.await(0, 1, 0, 10);
    t.hold(0, 0);
    assert.deepEqual(t.pausedOf(0), [0]);
    t.drop([0]);
    assert.equal(t.holds(0, 0), false);
    assert.deepEqual(t.pausedOf(0), []);
  });
});
