/**
 * Waiting for a consumer group to be empty before its offsets are set. Kafka lets a group's
 * offsets be set only when no member runs; a former member killed without leaving (SIGKILL)
 * stays a member until its session times out (30 s for the bus's consumers), so a restart
 * that sets the offsets (`fromTime`) was refused ("The consumer group must have no running
 * instances") although nothing else would ever read the group. Trying again with backoff
 * until the session has timed out gets past that, with a log line per attempt saying why.
 */
import type { Logger } from '../logger.js';
import { LogmeterError, errorMessage } from '../errors.js';

/** How long a group's offsets wait for the group to be empty: past the 30 s session of a member that died. */
export const GROUP_EMPTY_WAIT_MS = 45_000;

export interface GroupEmptyWait {
  /** Full group id (for the log lines and the error). */
  group: string;
  log: Logger;
  /** Default GROUP_EMPTY_WAIT_MS. */
  limitMs?: number;
  clock?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Runs `attempt` until it does not fail because the group has members (`busy(err)` gives the
 * group's state then, undefined for any other error, which is thrown at once). Between
 * attempts: 250 ms doubling up to 4 s, never past `limitMs` from the first attempt. After
 * `limitMs`: a retriable LogmeterError `kafka_group_busy` (the group has a member that lives).
 */
export async function whenGroupEmpty<R>(attempt: () => Promise<R>, busy: (err: unknown) => string | undefined, o: GroupEmptyWait): Promise<R> {
  const clock = o.clock ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const limitMs = o.limitMs ?? GROUP_EMPTY_WAIT_MS;
  const start = clock();
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const state = busy(err);
      if (state === undefined) throw err;
      const waited = clock() - start;
      const delay = Math.min(4000, 250 * 2 ** (n - 1), limitMs - waited);
      if (delay <= 0) {
        throw new LogmeterError('kafka_group_busy', `consumer group ${o.group} still has members (state ${state}) after ${Math.round(waited / 1000)} s; its offsets cannot be set while a member runs: ${errorMessage(err)}`, { retriable: true, cause: err });
      }
      o.log.warn({ group: o.group, state, attempt: n, waitedMs: waited, retryInMs: delay }, "waiting for the consumer group to be empty before setting its offsets: a member still runs, or a former member's session has not timed out yet");
      await sleep(delay);
    }
  }
}
