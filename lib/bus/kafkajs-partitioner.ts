import { Partitioners, type ICustomPartitioner } from 'kafkajs';

/**
 * kafkajs' default partitioner (murmur2 of the key, so the same partitions as every
 * Kafka client), remembering each string key's partition per topic and partition count:
 * the collector sends thousands of messages per second under one key (the container id),
 * and hashing each of them was the producer's largest single cost.
 */
export const keyedPartitioner: ICustomPartitioner = () => keyedPartitionerOver(new Map());

/**
 * The partition a message keyed `key` goes to on a topic of `partitions` partitions: the
 * same murmur2 as the producer, so a reader can tell which keys a partition holds (e.g.
 * the route processor's owners of the routes topic's partitions).
 */
export function partitionForKey(key: string, partitions: number): number {
  const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0] }));
  return Partitioners.DefaultPartitioner()({ topic: '', partitionMetadata, message: { key, value: null } });
}

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
