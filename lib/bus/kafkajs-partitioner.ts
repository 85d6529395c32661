import { Partitioners, type ICustomPartitioner } from 'kafkajs';

/**
 * kafkajs' default partitioner (murmur2 of the key, so the same partitions as every
 * Kafka client), remembering each string key's partition per topic and partition count:
 * the collector sends thousands of messages per second under one key (the container id),
 * and hashing each of them was the producer's largest single cost.
 */
export const keyedPartitioner: ICustomPartitioner = () => keyedPartitionerOver(new Map());

/** Per topic: the partition count the entries were computed for, and each key's partition. */
export type KeyPartitions = Map<string, { count: number; byKey: Map<string, number> }>;

/** keyedPartitioner remembering into `topics`, which the bus reads for stall reports. */
export function keyedPartitionerOver(topics: KeyPartitions): ReturnType<ICustomPartitioner> {
  const base = Partitioners.DefaultPartitioner();
  return (args) => {
    const { topic, partitionMetadata, message } = args;
    if (typeof message.key !== 'string' || (message.partition !== undefined && message.partition !== null)) return base(args);
    let t = topics.get(topic);
    // A topic that gained partitions maps its keys anew; keys come and go with containers,
    // so a topic's map starts over rather than grow without bound.
    if (!t || t.count !== partitionMetadata.length || t.byKey.size >= 100_000) topics.set(topic, (t = { count: partitionMetadata.length, byKey: new Map() }));
    let p = t.byKey.get(message.key);
    if (p === undefined) {
      p = base(args);
      t.byKey.set(message.key, p);
    }
    return p;
  };
}
