/**
 * The watchdog's lag reads over kafkajs (used by kafkajs.ts): end minus committed offset of
 * a subscription's partitions, on one admin client kept for them (an idle subscription is
 * looked at every few seconds), replaced after an error.
 */
import type { Admin, Kafka } from 'kafkajs';
import type { PartitionLag } from './watchdog.js';

export class KafkajsLagReader {
  private watchAdminP: Promise<Admin> | undefined;

  constructor(private readonly kafka: Kafka) {}

  /**
   * End minus committed offset of each partition `groupId` reads (those assigned to this
   * member, or all when it has none). A partition without a commit counts from its start
   * when the group starts at the beginning, and as 0 otherwise (where it starts is unknown).
   */
  async lagOf(groupId: string, topics: readonly string[], assigned: Record<string, number[]> | undefined, fromBeginning: boolean): Promise<PartitionLag[]> {
    const admin = await this.watchAdmin();
    try {
      const out: PartitionLag[] = [];
      for (const topic of topics) {
        const [ends, [committed]] = await Promise.all([admin.fetchTopicOffsets(topic), admin.fetchOffsets({ groupId, topics: [topic] })]);
        const mine = assigned ? new Set(assigned[topic] ?? []) : undefined;
        for (const e of ends) {
          if (mine && !mine.has(e.partition)) continue;
          const c = committed?.partitions.find((p) => p.partition === e.partition);
          const at = c && Number(c.offset) >= 0 ? Number(c.offset) : fromBeginning ? Number(e.low) : Number(e.high);
          out.push({ topic, partition: e.partition, lag: Math.max(0, Number(e.high) - at) });
        }
      }
      return out;
    } catch (err) {
      // A fresh admin client at the next look (its connection may be the broken part).
      this.watchAdminP = undefined;
      void admin.disconnect().catch(() => undefined);
      throw err;
    }
  }

  /** One admin client for the watchdog's lag reads (every few seconds per idle subscription). */
  private watchAdmin(): Promise<Admin> {
    this.watchAdminP ??= (async () => {
      const a = this.kafka.admin();
      try {
        await a.connect();
      } catch (err) {
        this.watchAdminP = undefined;
        throw err;
      }
      return a;
    })();
    return this.watchAdminP;
  }

  async close(): Promise<void> {
    const admin = this.watchAdminP;
    this.watchAdminP = undefined;
    await admin?.then((a) => a.disconnect()).catch(() => undefined);
  }
}
