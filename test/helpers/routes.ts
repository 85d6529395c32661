/** Shared by the routes tests that start HAProxy. */

/** A TCP port free on 127.0.0.1 right now (HAProxy's frontend binds it next). */
export { freePort } from './env.js';

import type { LifecycleEvent } from '../../schemas/events.js';
import { BASE_IMAGE } from '../../lib/docker.js';

/**
 * A lifecycle event of a routed test container (tenant `acme`, app = the host's first label,
 * its `lb-port` 80 published on 127.0.0.1:`port`), as the collector would write it: for tests
 * that publish lifecycle events themselves instead of starting containers.
 */
export function routedLifecycle(o: { eventPrefix: string; labelPrefix: string; containerId: string; n: number; action: string; host: string; port: number }): LifecycleEvent {
  const app = o.host.split('.')[0]!;
  return {
    event_id: `${o.eventPrefix}-${o.n}-${o.action}`,
    tenant: 'acme',
    app,
    node: 'test-node',
    container_id: o.containerId,
    container_name: `c${o.n}`,
    ts: Date.now(),
    action: o.action,
    actor: 'docker',
    exit_code: null,
    health: null,
    image: BASE_IMAGE,
    labels: { [`${o.labelPrefix}tenant`]: 'acme', [`${o.labelPrefix}app`]: app, [`${o.labelPrefix}lb-host`]: o.host, [`${o.labelPrefix}lb-port`]: '80' },
    networks: [],
    ports: [{ container_port: 80, protocol: 'tcp', host_ip: '127.0.0.1', host_port: o.port }],
    limits: { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: null,
    attributes: {},
  };
}
