/**
 * The log sink's fair share of an insert among tenants (processors/log-sink/fair-batcher.ts):
 * pure, no services. The sink itself is tested on Kafka and ClickHouse in fair-sink.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fairTake } from '../processors/log-sink/fair-batcher.js';

test('fairTake: a quiet lane has all its rows in the insert; the flood gets the rest', () => {
  assert.deepEqual(fairTake([20_000, 1], 2000), [1999, 1]);
  assert.deepEqual(fairTake([1, 20_000, 3, 20_000], 2000), [1, 998, 3, 998]);
  assert.deepEqual(fairTake([5, 7], 2000), [5, 7]);
  assert.deepEqual(fairTake([], 2000), []);
});

test('fairTake is max-min fair: fills the room, never more than a lane holds, a smaller lane never gets less than an equal share', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 40 }), fc.integer({ min: 1, max: 50_000 }), (waiting, room) => {
      const take = fairTake(waiting, room);
      const total = waiting.reduce((a, b) => a + b, 0);
      assert.equal(take.reduce((a, b) => a + b, 0), Math.min(total, room));
      take.forEach((t, i) => assert.ok(t >= 0 && t <= waiting[i]!));
      const fair = Math.floor(room / Math.max(1, waiting.length));
      take.forEach((t, i) => assert.ok(t >= Math.min(waiting[i]!, fair), `lane ${i}: ${t} of ${waiting[i]} (share ${fair})`));
      // Any lane short of its rows got at least as much as every other lane but one row of rounding.
      take.forEach((t, i) => {
        if (t < waiting[i]!) take.forEach((u) => assert.ok(u <= t + 1));
      });
    }),
  );
});
