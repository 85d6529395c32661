/**
 * A container's identity comes from its labels only (never from what it prints):
 * `<prefix>tenant`, `app`, `log-format`, `lb-host`, `lb-port`, `size`.
 *
 * Tenant and app names end up in topic keys, consumer-visible rows, metric labels,
 * report paths (`<dataDir>/reports/<tenant>/`) and autoscale keys (`tenant/app`), so
 * they are checked, not cleaned up: a value outside the allowed set or too long makes
 * the container refused (not collected, logged, counted, dead-lettered), never
 * rewritten — folding `Acme` into `acme` would hand one tenant's logs to another.
 *
 * The collector resolves a container's identity once and carries it in every lifecycle
 * event (`identity`, schema version 2); processors read it with {@link identityOf},
 * never from the labels again.
 */
import type { ContainerIdentity, LifecycleEvent } from '../schemas/events.js';

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

/** The identity as a lifecycle event carries it (schema field `identity`). */
export function identityRecord(id: Identity): ContainerIdentity {
  return { log_format: id.logFormat, lb_host: id.lbHost, lb_port: id.lbPort, size: id.size };
}

/**
 * The identity of a lifecycle event's container: the one the collector resolved and
 * carried (`identity`), or — for an event written before schema version 2 — the one
 * its labels give under the prefix of its tenant label (the label whose value is the
 * event's tenant). Not just any label ending in `.size`: Docker lists labels sorted,
 * so `a.size=small` would come before `logmeter.size=large`.
 */
export function identityOf(e: Pick<LifecycleEvent, 'tenant' | 'app' | 'labels'> & { identity?: ContainerIdentity | null | undefined }): Identity {
  if (e.identity) return { tenant: e.tenant, app: e.app, logFormat: e.identity.log_format, lbHost: e.identity.lb_host, lbPort: e.identity.lb_port, size: e.identity.size };
  for (const [k, v] of Object.entries(e.labels)) {
    if (v !== e.tenant || !(k === 'tenant' || k.endsWith('.tenant'))) continue;
    const prefix = k.slice(0, k.length - 'tenant'.length);
    const found = identityFromLabels(e.labels, prefix);
    if (found) return { ...found, app: e.app };
  }
  return { tenant: e.tenant, app: e.app, logFormat: null, lbHost: null, lbPort: null, size: null };
}
