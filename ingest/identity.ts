/**
 * A container's identity comes from its labels only (never from what it prints):
 * `<prefix>tenant`, `app`, `log-format`, `lb-host`, `lb-port`, `size`.
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

/** The identity labels of a container, or undefined when it has no tenant label (not collected). */
export function identityFromLabels(labels: Record<string, string> | undefined, prefix: string): Identity | undefined {
  const get = (k: string): string | null => {
    const v = labels?.[`${prefix}${k}`];
    return v === undefined || v === '' ? null : v;
  };
  const tenant = get('tenant');
  if (!tenant) return undefined;
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

/** Deterministic event id: the same inputs give the same id in every process, on every replay. */
export function eventId(...parts: Array<string | number>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(String(p)).update('\0');
  return h.digest('hex').slice(0, 32);
}
