/**
 * A container's identity comes from its labels only (never from what it prints):
 * `<prefix>tenant`, `app`, `log-format`, `lb-host`, `lb-port`, `size`.
 *
 * Tenant and app names end up in topic keys, consumer-visible rows, metric labels,
 * report paths (`<dataDir>/reports/<tenant>/`) and autoscale keys (`tenant/app`), so
 * they are checked, not cleaned up: a value outside the allowed set or too long makes
 * the container refused (not collected, logged, counted, dead-lettered), never
 * rewritten — folding `Acme` into `acme` would hand one tenant's logs to another.
 */
import { createHash } from 'node:crypto';

export interface Identity {
  tenant: string;
  app: string;
  logFormat: string | null;
  lbHost: string | null;
  lbPort: number | null;
  size: string | null;
}

/** Longest tenant, app, size or log-format value, in characters (a DNS label's limit). */
export const MAX_NAME_LENGTH = 63;

/** Lower-case letters, digits, `_`, `.` and `-`, starting with a letter or digit. */
const NAME_RE = /^[a-z0-9][a-z0-9_.-]*$/;

/** The identity labels checked against {@link NAME_RE}; `tenant` is required, the others optional. */
const NAME_LABELS = ['tenant', 'app', 'size', 'log-format'] as const;

/**
 * Why a container's identity labels are refused, or `undefined` when they are fine
 * (or when there is no tenant label at all: such a container is simply not a tenant's).
 */
export function identityProblem(labels: Record<string, string> | undefined, prefix: string): string | undefined {
  for (const k of NAME_LABELS) {
    const v = labels?.[`${prefix}${k}`];
    if (v === undefined || v === '') continue;
    if (v.length > MAX_NAME_LENGTH) return `label ${prefix}${k} is ${v.length} characters long (at most ${MAX_NAME_LENGTH})`;
    if (!NAME_RE.test(v)) return `label ${prefix}${k} "${shown(v)}" has characters outside a-z 0-9 _ . - (or does not start with a letter or digit)`;
  }
  return undefined;
}

/** The identity labels of a container, or undefined when it has no tenant label or {@link identityProblem} refuses them (not collected). */
export function identityFromLabels(labels: Record<string, string> | undefined, prefix: string): Identity | undefined {
  const get = (k: string): string | null => {
    const v = labels?.[`${prefix}${k}`];
    return v === undefined || v === '' ? null : v;
  };
  const tenant = get('tenant');
  if (!tenant || identityProblem(labels, prefix) !== undefined) return undefined;
  const port = Number(get('lb-port'));
  return {
    tenant,
    app: get('app') ?? '',
    logFormat: get('log-format'),
    lbHost: get('lb-host'),
    lbPort: Number.isInteger(port) && port > 0 && port < 65536 ? port : null,
    size: get('size'),
  };
}

/** A label value quoted in a log line or dead letter: at most 80 characters, control characters escaped. */
function shown(v: string): string {
  const cut = v.length > 80 ? `${v.slice(0, 80)}…` : v;
  return JSON.stringify(cut).slice(1, -1);
}

/** Deterministic event id: the same inputs give the same id in every process, on every replay. */
export function eventId(...parts: Array<string | number>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(String(p)).update('\0');
  return h.digest('hex').slice(0, 32);
}
