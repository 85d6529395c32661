/**
 * Where a container is reached, from its lifecycle event: the app host it serves (its
 * `lb-host`) and the published address and port of its `lb-port`. Pure; used by the
 * route table (table.ts).
 */
import type { LifecycleEvent } from '../../schemas/events.js';
import { identityFromLabels } from '../../lib/identity.js';
import type { TablePolicy } from './table.js';

const HOST_RE = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** `App.Example.COM.` → `app.example.com`; `undefined` when it is not a DNS host name. */
export function normalizeHost(raw: string): string | undefined {
  const h = raw.trim().toLowerCase().replace(/\.$/, '');
  return HOST_RE.test(h) ? h : undefined;
}

export type RouteTarget =
  | { host: string; address: string; port: number }
  | { host: string; address: null; port: null; problem: string }
  | { host: null; problem: 'no_lb_host' | 'bad_lb_host' };

/**
 * Where a container is reached: the host port bound to its `lb-port` container port (or
 * to its only published port), on the published host address (every interface →
 * `wildcardAddress`). IPv4 bindings are preferred over IPv6 ones.
 */
export function routeTarget(e: Pick<LifecycleEvent, 'labels' | 'ports' | 'identity'>, policy: Pick<TablePolicy, 'labelPrefix' | 'wildcardAddress'>): RouteTarget {
  // The identity the collector resolved; the labels only for events written before it carried one.
  const raw = e.identity ? e.identity.lb_host : e.labels[`${policy.labelPrefix}lb-host`];
  if (raw === undefined || raw === null || raw === '') return { host: null, problem: 'no_lb_host' };
  const host = normalizeHost(raw);
  if (!host) return { host: null, problem: 'bad_lb_host' };
  const lbPort = e.identity ? e.identity.lb_port : (identityFromLabels(e.labels, policy.labelPrefix)?.lbPort ?? null);
  const bound = e.ports.filter((p) => p.protocol === 'tcp' && p.host_port > 0 && p.host_port < 65536);
  let candidates = bound;
  if (lbPort !== null) candidates = bound.filter((p) => p.container_port === lbPort);
  else if (new Set(bound.map((p) => p.container_port)).size > 1) return { host, address: null, port: null, problem: 'several published ports and no lb-port label' };
  if (candidates.length === 0) return { host, address: null, port: null, problem: lbPort === null ? 'no published port' : `container port ${lbPort} is not published` };
  const chosen = candidates.find((p) => !p.host_ip.includes(':')) ?? candidates[0]!;
  let address = chosen.host_ip;
  if (address === '' || address === '0.0.0.0') address = policy.wildcardAddress;
  else if (address === '::') address = '::1';
  return { host, address, port: chosen.host_port };
}
