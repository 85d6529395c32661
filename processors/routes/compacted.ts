/**
 * The compacted routes topic as a table: read from the beginning by the bus in a group
 * of this reader's own (see EventBus.readToEnd), with a bound on how long the start
 * waits for everything that was on the topic at start. A tombstone (null value) deletes
 * its host.
 */
import { randomUUID } from 'node:crypto';
import type { EventBus } from '../../lib/bus/bus.js';
import type { Logger } from '../../lib/logger.js';
import type { RouteSet } from '../../schemas/events.js';

export interface RoutesReader {
  /**
   * Resolves `true` once every set on the topic at start was handed over, or `false`
   * after `catchUpTimeoutMs` (or a stop) without getting there.
   */
  caughtUp: Promise<boolean>;
  /** Whether everything on the topic at start has been read by now. */
  complete(): boolean;
  stop(): Promise<void>;
}

export interface RoutesReaderOptions {
  bus: EventBus;
  logger: Logger;
  /** Group name stem; a random suffix makes the group this reader's own. */
  name: string;
  onSet(set: RouteSet): void;
  /** A host's key deleted from the topic (a tombstone, see processor.ts): forget its set. */
  onForget(host: string): void;
  catchUpTimeoutMs: number;
  /** Keep following the topic after catching up (the applier) or only read it (a seed). Default true. */
  follow?: boolean;
}

export async function readRoutes(o: RoutesReaderOptions): Promise<RoutesReader> {
  const reader = await o.bus.readToEnd({
    topic: 'routes',
    group: `${o.name}.${randomUUID()}`,
    follow: o.follow ?? true,
    handle: (batch) => {
      for (const m of batch) o.onSet(m.event);
      return Promise.resolve();
    },
    onTombstone: (key) => {
      if (key !== null) o.onForget(key.toString('utf8'));
      return Promise.resolve();
    },
  });
  let timer: NodeJS.Timeout | undefined;
  const caughtUp = Promise.race([
    reader.caughtUp,
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        if (!reader.complete()) o.logger.warn({ timeoutMs: o.catchUpTimeoutMs }, 'routes topic not read to its end in time');
        resolve(reader.complete());
      }, o.catchUpTimeoutMs);
    }),
  ]);
  void caughtUp.then(() => clearTimeout(timer));
  return {
    caughtUp,
    complete: () => reader.complete(),
    async stop() {
      clearTimeout(timer);
      await reader.stop();
    },
  };
}
