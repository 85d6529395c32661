/**
 * Docker Engine API calls with a deadline (issue 13: a silent stall of the Docker side).
 * A call that never settles (a dockerd that takes the connection and never answers, a
 * container lock held for ever) would hang whoever awaits it: a follower's attach, the
 * collector's event handling, a stats round. Each call the collector makes gets a
 * deadline for Docker's answer to start; a follow stream (logs, events) lives as long as
 * it needs once its response has started: only the call until then is bounded. At the
 * deadline the request is aborted (its socket closed) and the call rejects with a
 * retriable `docker_timeout`, which the caller logs and retries as any Docker failure.
 */
import { LogmeterError } from '../lib/errors.js';

/**
 * `call(signal)` (a dockerode call given `abortSignal: signal`), rejected with
 * `docker_timeout` when it has not settled after `ms`, or with `docker_cancelled` as soon as
 * `cancel` aborts (a stop). A stream that arrives after either is destroyed.
 */
export async function withDeadline<T>(what: string, ms: number, call: (signal: AbortSignal) => Promise<T>, cancel?: AbortSignal): Promise<T> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onCancel: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new LogmeterError('docker_timeout', `Docker did not answer ${what} within ${ms} ms`, { retriable: true }));
      ac.abort();
    }, ms);
    onCancel = () => {
      reject(new LogmeterError('docker_cancelled', `${what} cancelled`, { retriable: false }));
      ac.abort();
    };
    if (cancel?.aborted) onCancel();
    else cancel?.addEventListener('abort', onCancel, { once: true });
  });
  const p = call(ac.signal);
  try {
    return await Promise.race([p, deadline]);
  } catch (err) {
    if (ac.signal.aborted) void p.then((late) => (late as { destroy?: () => void } | undefined)?.destroy?.(), () => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
    if (onCancel) cancel?.removeEventListener('abort', onCancel);
  }
}
