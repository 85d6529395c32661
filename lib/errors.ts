/**
 * Errors carry a stable code and whether retrying can help (like kafkajs' `retriable`
 * and BullMQ's unrecoverable errors). A payload that can never decode is not retried;
 * a programmer error is never retried.
 */
export class LogmeterError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  constructor(code: string, message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LogmeterError';
    this.code = code;
    this.retriable = opts.retriable ?? false;
  }
}

/** An invalid configuration, with every problem found (not just the first). */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Whether an error from any layer may succeed on retry. Unknown errors are assumed transient. */
export function isRetriable(err: unknown): boolean {
  if (err instanceof LogmeterError) return err.retriable;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return false;
  if (typeof err === 'object' && err !== null && 'retriable' in err) return Boolean((err).retriable);
  return true;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
