/**
 * A container's identity comes from its labels only (never from what it prints):
 * `<prefix>tenant`, `app`, `log-format`, `lb-host`, `lb-port`, `size`.
 */
import { hash } from 'node:crypto';

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
  // SHA-256 of the parts, each followed by a NUL; one-shot (3× cheaper than a Hash object per line).
  let s = '';
  for (const p of parts) s += `${p}\0`;
  return hash('sha256', s, 'hex').slice(0, 32);
}
