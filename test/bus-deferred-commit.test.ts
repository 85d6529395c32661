/**
 * Commits that trail the handler (lib/bus/deferred-commit.ts), without Kafka: per partition
 * in order, the end of the longest run of done parts; nothing more after a failure (and
 * the parts up to the highest offset queued handled synchronously after it); room for at
 * most `maxMessages`. The same through real Kafka and the sink: sink-deferred-commit.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { DeferredCommits } from '../lib/bus/deferred-commit.js';
import { deferred } from './helpers/deferred.js';

/** Lets every settled promise's reactions (and the commit chain) run. */
const settle = () => new Promise((r) => setImmediate(r));

function tracker(maxMessages = 1000) {
  const commits: string[] = [];
  const failures: string[] = [];
  const d = new DeferredCommits({
    commit: (topic, partition, next) => {
      commits.push(`${topic}/${partition}@${next}`);
      return Promise.resolve();
    },
    onFailure: (reason) => failures.push(reason),
    maxMessages,
    log: pino({ level: 'silent' }),
  });
  return { d, commits, failures };
}

test('per partition, the highest offset of the run of done parts from the oldest is committed, in order; partitions apart', async () => {
  const { d, commits } = tracker();
  const [a, b, c, x] = [deferred(), deferred(), deferred(), deferred()];
  d.add('t', 0, '9', 10, a.promise);
  d.add('t', 0, '19', 10, b.promise);
  d.add('t', 0, '29', 10, c.promise);
  d.add('t', 1, '4', 5, x.promise);
  assert.equal(d.pendingMessages, 35);
  b.resolve();
  await settle();
  assert.deepEqual(commits, [], 'a later part done first commits nothing');
  x.resolve();
  await settle();
  assert.deepEqual(commits, ['t/1@5']);
  a.resolve();
  await settle();
  assert.deepEqual(commits, ['t/1@5', 't/0@20'], 'both done parts in one commit');
  c.resolve();
  await settle();
  assert.deepEqual(commits, ['t/1@5', 't/0@20', 't/0@30']);
  assert.equal(d.pendingMessages, 0);
});

test('a failed part commits nothing more (not even parts done later), and its partition is handled synchronously up to the highest offset queued', async () => {
  const { d, commits, failures } = tracker();
  const [a, b, c, other] = [deferred(), deferred(), deferred(), deferred()];
  d.add('t', 0, '9', 10, a.promise);
  d.add('t', 0, '19', 10, b.promise);
  d.add('t', 0, '29', 10, c.promise);
  d.add('t', 2, '99', 100, other.promise);
  a.resolve();
  await settle();
  assert.deepEqual(commits, ['t/0@10']);
  b.reject(new Error('insert failed'));
  await settle();
  assert.equal(failures.length, 1);
  assert.match(failures[0]!, /t\/0 up to offset 19 failed: insert failed/);
  assert.equal(d.pendingMessages, 0, 'every waiting part forgotten');
  c.resolve();
  other.resolve();
  await settle();
  assert.deepEqual(commits, ['t/0@10'], 'done after the failure: not committed');
  // Read again from offset 10: parts starting up to 29 (partition 0) and 99 (partition 2) synchronously.
  assert.equal(d.accepts('t', 0, '10'), false);
  assert.equal(d.accepts('t', 0, '29'), false, 'a part starting at the last offset queued');
  assert.equal(d.accepts('t', 2, '0'), false);
  assert.equal(d.accepts('t', 2, '99'), false);
  assert.equal(d.accepts('t', 1, '5'), true, 'a partition with nothing queued defers at once');
  assert.equal(d.accepts('t', 0, '30'), true, 'past the highest offset queued: deferred again');
  assert.equal(d.accepts('t', 0, '10'), true, 'and stays so');
  // A second failure of the same kind is told again.
  const e = deferred();
  d.add('t', 0, '49', 10, e.promise);
  e.reject(new Error('again'));
  await settle();
  assert.equal(failures.length, 2);
});

test('room: held while maxMessages wait, released as parts are done or on abort', async () => {
  const { d } = tracker(20);
  const [a, b] = [deferred(), deferred()];
  d.add('t', 0, '9', 10, a.promise);
  let free = false;
  await d.room(new AbortController().signal);
  d.add('t', 0, '19', 10, b.promise);
  const waiting = d.room(new AbortController().signal).then(() => (free = true));
  await settle();
  assert.equal(free, false, '20 of 20 waiting');
  a.resolve();
  await waiting;
  assert.equal(free, true);
  d.add('t', 0, '29', 10, deferred().promise);
  const abort = new AbortController();
  let aborted = false;
  const held = d.room(abort.signal).then(() => (aborted = true));
  await settle();
  assert.equal(aborted, false);
  abort.abort();
  await held;
  assert.equal(aborted, true);
  b.resolve();
});

test('retain: a revoked partition commits nothing more (its parts done later, or failing, do nothing); the others go on', async () => {
  const { d, commits, failures } = tracker();
  const [a, b, c, x] = [deferred(), deferred(), deferred(), deferred()];
  d.add('t', 0, '9', 10, a.promise);
  d.add('t', 0, '19', 10, b.promise);
  d.add('t', 1, '4', 5, x.promise);
  d.add('u', 0, '2', 3, c.promise);
  a.resolve();
  await settle();
  assert.deepEqual(commits, ['t/0@10']);
  // A join that gives this member t/1 and u/0 only: t/0 went to another member.
  d.retain({ t: [1], u: [0] });
  assert.equal(d.pendingMessages, 8, 't/0 parts dropped');
  b.resolve();
  x.resolve();
  c.resolve();
  await settle();
  assert.deepEqual(commits, ['t/0@10', 't/1@5', 'u/0@3'], 'no commit of t/0 after the revoke (it would move the new owner back)');
  assert.deepEqual([failures, d.pendingMessages], [[], 0]);
  // A dropped partition's failing work is not a failure of this member.
  const { d: d2, commits: commits2, failures: failures2 } = tracker();
  const y = deferred();
  d2.add('t', 3, '9', 10, y.promise);
  d2.retain({ t: [0] });
  y.reject(new Error('late'));
  await settle();
  assert.deepEqual([commits2, failures2, d2.pendingMessages], [[], [], 0]);
  // Taken again later: accepted for deferral from any offset (nothing synchronous left over).
  assert.equal(d2.accepts('t', 3, '0'), true);
});

test('settled: resolves only once every waiting part is done and its commit answered (or forgotten by a failure)', async () => {
  const answered: string[] = [];
  let answer!: () => void;
  const d = new DeferredCommits({
    commit: (topic, partition, next) =>
      new Promise<void>((r) => {
        answer = () => {
          answered.push(`${topic}/${partition}@${next}`);
          r();
        };
      }),
    onFailure: () => undefined,
    maxMessages: 1000,
    log: pino({ level: 'silent' }),
  });
  const [a, b] = [deferred(), deferred()];
  d.add('t', 0, '9', 10, a.promise);
  d.add('t', 0, '19', 10, b.promise);
  let settled = false;
  const s = d.settled().then(() => (settled = true));
  a.resolve();
  await settle();
  assert.equal(settled, false, 'a part still waits');
  answer();
  b.resolve();
  await settle();
  assert.equal(settled, false, 'the last commit is not answered yet');
  answer();
  await s;
  assert.deepEqual(answered, ['t/0@10', 't/0@20']);
  // A failure forgets what waits: settled then.
  const f = deferred();
  d.add('t', 0, '29', 10, f.promise);
  const s2 = d.settled();
  f.reject(new Error('insert failed'));
  await s2;
  assert.equal(d.pendingMessages, 0);
});
