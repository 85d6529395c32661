/**
 * Bench-side instrumentation of the event bus: the same EventBus, seen through a Proxy
 * that notes when messages are sent, acknowledged and handed to subscribers. The product
 * code runs unchanged; the latency benchmarks use it to say where the time goes.
 */
import type { ConsumedMessage, EventBus, OutgoingMessage, ReadToEndOptions, SubscribeOptions } from '../../lib/bus/bus.js';
import type { TopicName } from '../../schemas/events.js';
import { nowMs } from './common.js';

export interface BusTaps {
  /** After Kafka acknowledged `bus.publish(topic, messages)`: when it was called and when it resolved (epoch ms). */
  published?(topic: TopicName, messages: readonly OutgoingMessage<TopicName>[], sent: number, acked: number): void;
  /** After Kafka acknowledged a `publishRawBatch` (the collector's requests). */
  rawBatch?(batches: Parameters<EventBus['publishRawBatch']>[0], sent: number, acked: number): void;
  /** A subscriber's handler is about to get `batch` (its group as passed to subscribe or readToEnd). */
  handled?(group: string, batch: readonly ConsumedMessage<TopicName>[], at: number): void;
}

export function tapBus(bus: EventBus, taps: BusTaps): EventBus {
  return new Proxy(bus, {
    get(target, prop, receiver) {
      if (prop === 'publish' && taps.published) {
        return async <T extends TopicName>(topic: T, messages: readonly OutgoingMessage<T>[]) => {
          const sent = nowMs();
          await target.publish(topic, messages);
          taps.published!(topic, messages, sent, nowMs());
        };
      }
      if (prop === 'publishRawBatch' && taps.rawBatch) {
        return async (batches: Parameters<EventBus['publishRawBatch']>[0]) => {
          const sent = nowMs();
          await target.publishRawBatch(batches);
          taps.rawBatch!(batches, sent, nowMs());
        };
      }
      if (prop === 'subscribe' && taps.handled) {
        return <T extends TopicName>(opts: SubscribeOptions<T>) =>
          target.subscribe<T>({
            ...opts,
            handle: (batch, ctx) => {
              taps.handled!(opts.group, batch, nowMs());
              return opts.handle(batch, ctx);
            },
          });
      }
      if (prop === 'readToEnd' && taps.handled) {
        return <T extends TopicName>(opts: ReadToEndOptions<T>) =>
          target.readToEnd<T>({
            ...opts,
            handle: (batch, ctx) => {
              taps.handled!(opts.group, batch, nowMs());
              return opts.handle(batch, ctx);
            },
          });
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
