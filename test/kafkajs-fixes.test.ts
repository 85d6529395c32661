import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { groupMessagesPerPartition } from '../lib/bus/kafkajs-fixes.js';
import { Partitioners } from 'kafkajs';
import { keyedPartitioner } from '../lib/bus/kafkajs.js';

const require = createRequire(import.meta.url);

test('kafkajs loads the linear grouping in place of its own', () => {
  assert.equal(require('kafkajs/src/producer/groupMessagesPerPartition.js'), groupMessagesPerPartition);
});

test('grouping per partition: every message once, in its original order, the partitioner asked once per message', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ key: fc.string(), n: fc.nat() }), { maxLength: 300 }), fc.integer({ min: 1, max: 12 }), (messages, partitions) => {
      const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({ partitionId: i, leader: 0 }));
      let calls = 0;
      const partitioner = ({ message }: { message: unknown }) => {
        calls++;
        return (message as { n: number }).n % partitions;
      };
      const got = groupMessagesPerPartition({ topic: 't', partitionMetadata, messages, partitioner });
      assert.equal(calls, messages.length);
      const expected: Record<number, unknown[]> = {};
      for (const m of messages) (expected[m.n % partitions] ??= []).push(m);
      assert.deepEqual(got, expected);
      for (const list of Object.values(got)) for (const m of list) assert.ok(messages.includes(m as (typeof messages)[number]), 'same objects, not copies');
    }),
  );
});

test('no partitions known: nothing grouped (kafkajs then refreshes its metadata)', () => {
  assert.deepEqual(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages: [{}], partitioner: () => 0 }), {});
});

test('keyed partitioner: the partition kafkajs\' default gives each key, also after a topic gains partitions', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('logs', 'stats'), fc.constantFrom('c1', 'c2', 'c3', 'web-7f3a'), fc.integer({ min: 1, max: 12 })), { maxLength: 200 }), (sends) => {
      const mine = keyedPartitioner();
      const theirs = Partitioners.DefaultPartitioner();
      for (const [topic, key, count] of sends) {
        const partitionMetadata = Array.from({ length: count }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
        const args = { topic, partitionMetadata, message: { key, value: null } };
        assert.equal(mine(args), theirs(args), `${topic}/${key} over ${count} partitions`);
      }
    }),
  );
});
