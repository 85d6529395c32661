/**
 * Fixes to kafkajs 2.2.4 (in maintenance mode, no release since 2023), installed
 * before kafkajs loads. Import this module before anything that imports 'kafkajs'.
 *
 * kafkajs groups each produce batch's messages by partition with an array spread per
 * message (`[...current, message]`), which is quadratic in the messages per partition:
 * with the collector's 512 KiB batches (~3,500 log lines) it was 5 % of the collector's
 * CPU. The upstream fix (tulios/kafkajs#1576) was never released. The replacement below
 * gives the same result — for each partition its messages in their original order, the
 * same partitioner call per message — in one pass.
 *
 * The produce request and kafkajs' request framing are encoded with one allocation each
 * instead of nested doubling encoders (kafkajs-encoding.ts, imported first below).
 */
import Module, { createRequire } from 'node:module';
import path from 'node:path';
// The produce request and request framing encoded with one allocation (before kafkajs loads its connection).
import './kafkajs-encoding.js';

interface GroupArgs {
  topic: string;
  partitionMetadata: unknown[];
  messages: unknown[];
  partitioner: (args: { topic: string; partitionMetadata: unknown[]; message: unknown }) => number;
}

export function groupMessagesPerPartition({ topic, partitionMetadata, messages, partitioner }: GroupArgs): Record<number, unknown[]> {
  const result: Record<number, unknown[]> = {};
  if (partitionMetadata.length === 0) return result;
  for (const message of messages) {
    const partition = partitioner({ topic, partitionMetadata, message });
    (result[partition] ??= []).push(message);
  }
  return result;
}

const require = createRequire(import.meta.url);
const src = path.join(path.dirname(require.resolve('kafkajs')), 'src', 'producer');
const target = path.join(src, 'groupMessagesPerPartition.js');
const cache = require.cache;

if (cache[path.join(src, 'sendMessages.js')] && cache[target]?.exports !== groupMessagesPerPartition) {
  throw new Error('lib/bus/kafkajs-fixes.ts must be imported before kafkajs is loaded');
}
if (!cache[target]) {
  const m = new Module(target);
  m.filename = target;
  m.exports = groupMessagesPerPartition;
  m.loaded = true;
  cache[target] = m;
}
