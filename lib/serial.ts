/**
 * Serial promise queues: async functions run one at a time, in call order, e.g. work
 * that shares state with a timer, or commands on one socket.
 *
 * Each function starts once the one before it has settled, resolved or rejected: a
 * failure belongs to its caller (whose promise rejects), so it never blocks or fails the
 * calls after it. A function that throws synchronously rejects its own call the same way.
 * The queue holds no results: a settled call leaves nothing behind.
 */

export interface Serial {
  /** Runs `fn` after every function queued before it has settled; settles as `fn` does. */
  run<R>(fn: () => R | Promise<R>): Promise<R>;
  /** Resolves (never rejects) once every function queued so far has settled. */
  idle(): Promise<void>;
  /** Functions queued or running. */
  readonly size: number;
}

export function serial(): Serial {
  // Never rejects: each link swallows its function's outcome, which its caller already has.
  let tail: Promise<void> = Promise.resolve();
  let size = 0;
  const settled = () => {
    size--;
  };
  return {
    run<R>(fn: () => R | Promise<R>): Promise<R> {
      size++;
      const result = tail.then(() => fn());
      tail = result.then(settled, settled);
      return result;
    },
    idle: () => tail,
    get size() {
      return size;
    },
  };
}

/** One {@link Serial} per key: calls with the same key run one at a time, other keys run alongside. */
export interface KeyedSerial<K> {
  /** Runs `fn` after every function queued before it under `key` has settled; settles as `fn` does. */
  run<R>(key: K, fn: () => R | Promise<R>): Promise<R>;
  /** Resolves (never rejects) once every function queued so far under `key` has settled. */
  idle(key: K): Promise<void>;
  /** Keys with a function queued or running; a key is forgotten when its last function settles. */
  readonly size: number;
}

export function keyedSerial<K = string>(): KeyedSerial<K> {
  const queues = new Map<K, Serial>();
  return {
    run<R>(key: K, fn: () => R | Promise<R>): Promise<R> {
      let queue = queues.get(key);
      if (!queue) queues.set(key, (queue = serial()));
      const q = queue;
      const result = q.run(fn);
      // Forgotten only when nothing was queued behind this call meanwhile; the last call's check does it.
      void q.idle().then(() => {
        if (q.size === 0 && queues.get(key) === q) queues.delete(key);
      });
      return result;
    },
    idle: (key) => queues.get(key)?.idle() ?? Promise.resolve(),
    get size() {
      return queues.size;
    },
  };
}
