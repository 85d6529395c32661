/**
 * What the autoscaler knows about containers, from lifecycle events: the running
 * replicas of each app, the app each load-balancer host belongs to (`<prefix>lb-host`
 * labels) and the labels an app's policy may be overridden by. Pure; fed by the
 * processor from the lifecycle topic (and, after a restart, from ClickHouse).
 */
import type { LifecycleEvent } from '../../schemas/events.js';

/** Actions after which a container serves requests, and after which it does not. */
const RUNNING = new Set(['start', 'restart', 'unpause']);
const NOT_RUNNING = new Set(['create', 'die', 'stop', 'pause', 'destroy']);

export type FleetEvent = Pick<LifecycleEvent, 'container_id' | 'tenant' | 'app' | 'ts' | 'action' | 'labels'>;

interface Container {
  app: string;
  ts: number;
  running: boolean;
}

/** `Host:port` → `host`, lower-cased: how the access-log parser writes hosts. */
export function normalizeHost(h: string): string {
  const s = h.trim().toLowerCase();
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    return close > 0 ? s.slice(0, close + 1) : s;
  }
  const colon = s.indexOf(':');
  return colon >= 0 && s.indexOf(':', colon + 1) < 0 ? s.slice(0, colon) : s;
}

export class Fleet {
  private readonly containers = new Map<string, Container>();
  private readonly running = new Map<string, Set<string>>();
  private readonly hosts = new Map<string, string>();
  private readonly appHost = new Map<string, string>();
  private readonly appLabels = new Map<string, { ts: number; labels: Record<string, string> }>();

  /**
   * @param labelPrefix the collector's label prefix (`logmeter.`)
   * @param lbApp `<tenant>/<app>` of the load balancer: never counted as replicas
   */
  constructor(
    private readonly labelPrefix: string,
    private readonly lbApp: string,
  ) {}

  /** Applies one event; an event older than what is known of its container changes nothing. */
  apply(e: FleetEvent): void {
    if (!e.tenant) return;
    const app = `${e.tenant}/${e.app}`;
    const known = this.containers.get(e.container_id);
    if (known && e.ts < known.ts) return;
    if (app !== this.lbApp && (RUNNING.has(e.action) || e.action === 'create')) {
      const labels = this.appLabels.get(app);
      if (!labels || e.ts >= labels.ts) this.appLabels.set(app, { ts: e.ts, labels: e.labels });
      const host = e.labels[`${this.labelPrefix}lb-host`];
      const h = host ? normalizeHost(host) : '';
      const owner = this.hosts.get(h);
      // A host belongs to the first tenant that claimed it (as in the route table): another
      // tenant's claim is ignored, or its signals would be made of the owner's requests.
      if (h && (owner === undefined || owner.startsWith(`${e.tenant}/`))) {
        this.hosts.set(h, app);
        this.appHost.set(app, h);
      }
    }
    if (!RUNNING.has(e.action) && !NOT_RUNNING.has(e.action)) {
      // health_status, kill, oom, the scaler's operations …: the container's state is told by the
      // start/die around them. They do not move its clock either: another producer's event (the
      // scaler's scale_up) can reach the topic before Docker's earlier start of the same container.
      return;
    }
    const running = RUNNING.has(e.action);
    this.setRunning(e.container_id, known?.app, false);
    if (e.action === 'destroy') {
      this.containers.delete(e.container_id);
      return;
    }
    this.containers.set(e.container_id, { app, ts: e.ts, running });
    if (running && app !== this.lbApp) this.setRunning(e.container_id, app, true);
  }

  private setRunning(id: string, app: string | undefined, on: boolean): void {
    if (app === undefined) return;
    let set = this.running.get(app);
    if (on) {
      if (!set) this.running.set(app, (set = new Set()));
      set.add(id);
    } else if (set) {
      set.delete(id);
      if (set.size === 0) this.running.delete(app);
    }
  }

  /** Running replicas of `tenant/app`. */
  replicas(app: string): number {
    return this.running.get(app)?.size ?? 0;
  }

  /** The app a load-balancer host routes to (among its owner tenant's apps, the newest container claiming it wins). */
  appForHost(host: string): string | undefined {
    return this.hosts.get(normalizeHost(host));
  }

  /** The app's load-balancer host, `''` when none of its containers names one. */
  hostOf(app: string): string {
    return this.appHost.get(app) ?? '';
  }

  /** Labels of the app's most recently created or started container. */
  labels(app: string): Record<string, string> {
    return this.appLabels.get(app)?.labels ?? {};
  }

  /** Containers tracked (memory). */
  get size(): number {
    return this.containers.size;
  }
}
