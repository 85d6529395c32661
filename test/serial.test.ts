import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { keyedSerial, serial } from '../lib/serial.js';
import { deferred } from './helpers/deferred.js';

const tick = () => new Promise<void>((r) => setImmediate(r));

test('serial: functions run one at a time, in call order, each with its own result', async () => {
  const q = serial();
  const log: string[] = [];
  const first = deferred();
  const a = q.run(async () => {
    log.push('a start');
    await first.promise;
    log.push('a end');
    return 'a';
  });
  const b = q.run(() => {
    log.push('b');
    return 'b';
  });
  await tick();
  assert.deepEqual(log, ['a start'], 'b waits for a');
  assert.equal(q.size, 2);
  first.resolve();
  assert.deepEqual(await Promise.all([a, b]), ['a', 'b']);
  assert.deepEqual(log, ['a start', 'a end', 'b']);
  assert.equal(q.size, 0);
});

test('serial: a rejection goes to its caller only; the next function still runs', async () => {
  const q = serial();
  const a = q.run(() => Promise.reject(new Error('a failed')));
  const b = q.run(() => {
    throw new Error('b threw');
  });
  const c = q.run(() => 'c');
  await assert.rejects(a, /a failed/);
  await assert.rejects(b, /b threw/);
  assert.equal(await c, 'c');
});

test('serial: a function that throws synchronously rejects its call, never the caller of run', async () => {
  const q = serial();
  let p: Promise<never> | undefined;
  assert.doesNotThrow(() => {
    p = q.run(() => {
      throw new Error('sync');
    });
  });
  await assert.rejects(p!, /sync/);
});

test('serial: idle resolves once everything queued so far settled, also after a failure', async () => {
  const q = serial();
  await q.idle(); // empty
  const gate = deferred();
  let done = false;
  const a = q.run(async () => {
    await gate.promise;
    done = true;
  });
  const b = q.run(() => Promise.reject(new Error('last one fails')));
  const idle = q.idle();
  await tick();
  assert.equal(done, false);
  gate.resolve();
  await idle; // does not reject
  assert.equal(done, true);
  await a;
  await assert.rejects(b);
  assert.equal(q.size, 0);
});

test('serial: never two at once and always call order, for any mix of delays and failures (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ delay: fc.integer({ min: 0, max: 3 }), fails: fc.boolean() }), { maxLength: 20 }), async (calls) => {
      const q = serial();
      let running = 0;
      let most = 0;
      const order: number[] = [];
      const results = calls.map((c, i) =>
        q.run(async () => {
          running++;
          most = Math.max(most, running);
          order.push(i);
          for (let n = 0; n < c.delay; n++) await tick();
          running--;
          if (c.fails) throw new Error(`call ${i}`);
          return i;
        }),
      );
      const settled = await Promise.allSettled(results);
      assert.ok(most <= 1);
      assert.deepEqual(order, calls.map((_, i) => i));
      settled.forEach((s, i) => assert.deepEqual(s, calls[i]!.fails ? { status: 'rejected', reason: new Error(`call ${i}`) } : { status: 'fulfilled', value: i }));
      assert.equal(q.size, 0);
    }),
    { numRuns: 50 },
  );
});

test('keyedSerial: one at a time per key, other keys alongside; a drained key is forgotten', async () => {
  const q = keyedSerial();
  const log: string[] = [];
  const gate = deferred();
  const a1 = q.run('a', async () => {
    log.push('a1');
    await gate.promise;
  });
  const a2 = q.run('a', () => {
    log.push('a2');
  });
  const b1 = q.run('b', () => {
    log.push('b1');
  });
  await b1;
  assert.deepEqual(log, ['a1', 'b1'], 'b does not wait for a; a2 waits for a1');
  gate.resolve();
  await Promise.all([a1, a2]);
  assert.deepEqual(log, ['a1', 'b1', 'a2']);
  await q.idle('a');
  await tick();
  assert.equal(q.size, 0);
  await q.idle('never used');
});

test('keyedSerial: a failure under one key does not stop that key or the others', async () => {
  const q = keyedSerial<number>();
  const bad = q.run(1, () => Promise.reject(new Error('one')));
  const next = q.run(1, () => 'after');
  const other = q.run(2, () => 'other');
  await assert.rejects(bad, /one/);
  assert.equal(await next, 'after');
  assert.equal(await other, 'other');
});

test('keyedSerial: a key queued again while its last call settles keeps its order', async () => {
  const q = keyedSerial();
  const order: number[] = [];
  await q.run('k', () => order.push(1));
  // Queued right after the first settled, before the key could be forgotten.
  const second = q.run('k', async () => {
    await tick();
    order.push(2);
  });
  const third = q.run('k', () => order.push(3));
  await Promise.all([second, third]);
  assert.deepEqual(order, [1, 2, 3]);
  await q.idle('k');
  await tick();
  assert.equal(q.size, 0);
});
