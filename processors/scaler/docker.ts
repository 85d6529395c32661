/**
 * The scaler's side of Docker: an app's replicas, new replicas made from a template,
 * surplus replicas stopped and removed.
 *
 * A replica is a running container with `<prefix>tenant` and `<prefix>app` labels. A
 * new replica copies the newest existing one (image, command, entrypoint, env, labels,
 * every network with its aliases, exposed and published ports, limits, init, restart
 * and log settings), with a declared template's fields on top. Published ports keep
 * their container port and host address; the host port is always dynamic, since two
 * replicas cannot share one. Mounts are deliberately not copied: a replica that needs
 * data gets it from a declared template's image or from the network, never from a
 * bind mount silently shared by every replica.
 */
import { randomBytes } from 'node:crypto';
import type Docker from 'dockerode';
import { LogmeterError, errorMessage } from '../../lib/errors.js';
import type { AppTemplate } from './config.js';
import { optsIn } from './plan.js';

/** Label every replica the scaler creates carries (`<prefix>scaled-by=scaler`). */
export const SCALED_BY_LABEL = 'scaled-by';
export const SCALED_BY_VALUE = 'scaler';

export interface Replica {
  id: string;
  name: string;
  /** Docker's `Created`, in nanoseconds since the epoch (Docker's own resolution, so replicas created within one millisecond still sort). */
  createdNs: bigint;
  info: Docker.ContainerInspectInfo;
}

/** Docker errors: a 4xx (no such image, bad options) will not pass on retry, except a name conflict; the rest may. */
export function dockerError(call: string, err: unknown): LogmeterError {
  if (err instanceof LogmeterError) return err;
  const status = typeof err === 'object' && err !== null && 'statusCode' in err ? Number(err.statusCode) : undefined;
  const retriable = status === undefined || status >= 500 || status === 409;
  return new LogmeterError(status === 404 ? 'docker_not_found' : 'docker_error', `Docker ${call}: ${errorMessage(err)}`, { retriable, cause: err });
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err ? Number(err.statusCode) : undefined;
}

/** RFC 3339 with up to nine fractional digits (Docker trims trailing zeros) → nanoseconds. */
export function createdNanos(created: string): bigint {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(created);
  if (!m) return 0n;
  const seconds = Date.parse(`${m[1]!}${m[3]!}`) / 1000;
  if (!Number.isFinite(seconds)) return 0n;
  return BigInt(seconds) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/**
 * The containers matching `filters` (Docker's list filters), each inspected; one removed
 * between the list and its inspect is left out.
 */
export async function inspectMatching(docker: Docker, filters: Record<string, string[]>, all = false): Promise<Docker.ContainerInspectInfo[]> {
  let listed: Docker.ContainerInfo[];
  try {
    listed = await docker.listContainers({ all, filters: JSON.stringify(filters) });
  } catch (err) {
    throw dockerError('list containers', err);
  }
  const inspected = await Promise.all(
    listed.map(async (c) => {
      try {
        return await docker.getContainer(c.Id).inspect();
      } catch (err) {
        if (statusOf(err) === 404) return undefined; // removed since the list
        throw dockerError('inspect', err);
      }
    }),
  );
  return inspected.filter((i): i is Docker.ContainerInspectInfo => i !== undefined);
}

/** The app's containers, newest first: running ones only, unless `all` (any state: a template source when none runs). */
export async function listReplicas(docker: Docker, labelPrefix: string, tenant: string, app: string, opts: { all?: boolean } = {}): Promise<Replica[]> {
  const filters: Record<string, string[]> = { label: [`${labelPrefix}tenant=${tenant}`, `${labelPrefix}app=${app}`] };
  if (!opts.all) filters.status = ['running'];
  const inspected = await inspectMatching(docker, filters, opts.all ?? false);
  const replicas = inspected
    .filter((i) => opts.all === true || i.State.Running)
    .map((info) => ({ id: info.Id, name: info.Name.replace(/^\//, ''), createdNs: createdNanos(info.Created), info }));
  return replicas.sort((a, b) => (a.createdNs === b.createdNs ? a.id.localeCompare(b.id) : a.createdNs > b.createdNs ? -1 : 1));
}

/** What the scaler needs to know of an app's running containers (see plan.ts' states). */
export interface Census {
  /** Running containers of the app, own and the scaler's. */
  current: number;
  /** Of which the tenant's own (without `<prefix>scaled-by=scaler`). */
  own: number;
  /** A running own container carries `<prefix>autoscale.max` or `<prefix>autoscale=on` (a replica's copied labels do not count: the tenant's containers decide). */
  labelledOptIn: boolean;
}

/** Whether a container was started by the scaler. */
export function isScalerReplica(labels: Record<string, string> | undefined, labelPrefix: string): boolean {
  return labels?.[`${labelPrefix}${SCALED_BY_LABEL}`] === SCALED_BY_VALUE;
}

/** The census of running containers, from their labels. */
export function censusOf(labelSets: ReadonlyArray<Record<string, string> | undefined>, labelPrefix: string): Census {
  const own = labelSets.filter((l) => !isScalerReplica(l, labelPrefix));
  return { current: labelSets.length, own: own.length, labelledOptIn: own.some((l) => optsIn(l, labelPrefix)) };
}

/** The app's running containers, counted from one list call without inspecting them (the per-signal check). */
export async function appCensus(docker: Docker, labelPrefix: string, tenant: string, app: string): Promise<Census> {
  try {
    const filters = { label: [`${labelPrefix}tenant=${tenant}`, `${labelPrefix}app=${app}`], status: ['running'] };
    const listed = await docker.listContainers({ filters: JSON.stringify(filters) });
    return censusOf(listed.map((c) => c.Labels), labelPrefix);
  } catch (err) {
    throw dockerError('list containers', err);
  }
}

/** Apps (`{tenant, app}`) with at least one running scaler replica on this Docker host: what the sweep looks at. */
export async function appsWithReplicas(docker: Docker, labelPrefix: string): Promise<Array<{ tenant: string; app: string }>> {
  let listed: Docker.ContainerInfo[];
  try {
    listed = await docker.listContainers({ filters: JSON.stringify({ label: [`${labelPrefix}${SCALED_BY_LABEL}=${SCALED_BY_VALUE}`], status: ['running'] }) });
  } catch (err) {
    throw dockerError('list containers', err);
  }
  const apps = new Map<string, { tenant: string; app: string }>();
  for (const c of listed) {
    const tenant = c.Labels[`${labelPrefix}tenant`];
    const app = c.Labels[`${labelPrefix}app`];
    if (tenant && app !== undefined) apps.set(`${tenant}/${app}`, { tenant, app });
  }
  return [...apps.values()];
}

/** Running tenant containers (any tenant, any app) on this Docker host: what the per-node cap counts. */
export async function countNodeContainers(docker: Docker, labelPrefix: string): Promise<number> {
  try {
    const listed = await docker.listContainers({ filters: JSON.stringify({ label: [`${labelPrefix}tenant`], status: ['running'] }) });
    return listed.length;
  } catch (err) {
    throw dockerError('list containers', err);
  }
}

/** `<app>-<tenant>-<6 hex>`, reduced to the characters Docker allows in names. */
export function replicaName(app: string, tenant: string): string {
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9_.-]+/g, '-');
  const name = `${clean(app)}-${clean(tenant)}-${randomBytes(3).toString('hex')}`;
  return /^[a-zA-Z0-9]/.test(name) ? name : `r${name}`;
}

export interface ReplicaSpec {
  /** What `createContainer` gets: the primary network only (Docker API 1.41 takes one endpoint at create). */
  create: Docker.ContainerCreateOptions;
  /** Networks connected before the start, so the replica starts with all of them. */
  extraNetworks: Array<{ name: string; aliases: string[] }>;
}

export interface SpecOptions {
  /** The replica copied (normally the app's newest). */
  source?: Docker.ContainerInspectInfo | undefined;
  /** The app's declared template; its fields win over the copy. */
  template?: AppTemplate | undefined;
  tenant: string;
  app: string;
  labelPrefix: string;
  name: string;
}

/** Network modes that are not networks to attach to. */
function isSpecialMode(mode: string): boolean {
  return mode === 'host' || mode === 'none' || mode.startsWith('container:');
}

function envMerge(base: string[], over: Record<string, string> | undefined): string[] {
  if (!over) return base;
  const out = base.map((kv) => {
    const k = kv.slice(0, kv.indexOf('=') < 0 ? kv.length : kv.indexOf('='));
    return k in over ? `${k}=${over[k]!}` : kv;
  });
  const present = new Set(base.map((kv) => kv.slice(0, kv.indexOf('=') < 0 ? kv.length : kv.indexOf('='))));
  for (const [k, v] of Object.entries(over)) if (!present.has(k)) out.push(`${k}=${v}`);
  return out;
}

/**
 * The create options of a new replica: a copy of `source` with `template` on top, the
 * identity labels set, and every published port made dynamic. Throws a non-retriable
 * `scaler_no_template` when neither names an image.
 */
export function replicaSpec(o: SpecOptions): ReplicaSpec {
  const { source, template } = o;
  const image = template?.image ?? source?.Config.Image;
  if (!image) throw new LogmeterError('scaler_no_template', `no replica of ${o.tenant}/${o.app} to copy and no template image declared`);
  const cfg = source?.Config;
  const host: Partial<Docker.HostConfig> = source?.HostConfig ?? {};

  const labels: Record<string, string> = {
    ...(cfg?.Labels ?? {}),
    ...(template?.labels ?? {}),
    [`${o.labelPrefix}tenant`]: o.tenant,
    [`${o.labelPrefix}app`]: o.app,
    [`${o.labelPrefix}${SCALED_BY_LABEL}`]: SCALED_BY_VALUE,
  };

  // Ports: same container ports and host addresses, host port chosen by Docker.
  const exposed: Record<string, object> = { ...(cfg?.ExposedPorts ?? {}) };
  const bindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {};
  if (template?.publish) {
    for (const p of template.publish) {
      const key = `${p.containerPort}/${p.protocol}`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: '' });
    }
  } else {
    const sourceBindings = (host.PortBindings ?? {}) as Record<string, Array<{ HostIp?: string; HostPort?: string }> | null>;
    for (const [key, list] of Object.entries(sourceBindings)) {
      exposed[key] = {};
      bindings[key] = (list ?? []).map((b) => ({ HostIp: b.HostIp ?? '', HostPort: '' }));
    }
  }

  // Networks: the source's primary (its NetworkMode) first, then the others with their aliases.
  let networkMode: string | undefined;
  let networks: Array<{ name: string; aliases: string[] }> = [];
  if (template?.networks) {
    networks = template.networks.map((name) => ({ name, aliases: [] }));
  } else if (source) {
    const mode = source.HostConfig.NetworkMode ?? 'default';
    if (isSpecialMode(mode)) networkMode = mode;
    else {
      const attached = Object.entries(source.NetworkSettings.Networks ?? {});
      const own = new Set([source.Id.slice(0, 12), source.Name.replace(/^\//, '')]);
      const all = attached.map(([name, ep]) => ({ name, id: ep.NetworkID ?? '', aliases: ((ep.Aliases as string[] | null | undefined) ?? []).filter((a: string) => !own.has(a)) }));
      const primaryName = mode === 'default' ? 'bridge' : mode;
      const primaryAt = all.findIndex((n) => n.name === primaryName || (n.id !== '' && n.id.startsWith(primaryName)));
      if (primaryAt > 0) all.unshift(...all.splice(primaryAt, 1));
      networks = all.map(({ name, aliases }) => ({ name, aliases }));
    }
  }
  const [primary, ...extra] = networks;
  if (primary) networkMode = primary.name;

  const memory = template?.memoryBytes ?? host.Memory;
  const nanoCpus = template?.nanoCpus ?? host.NanoCpus;
  const positive = (n: number | null | undefined) => (typeof n === 'number' && n > 0 ? n : undefined);
  const hostConfig: Docker.HostConfig = {
    Init: template?.init ?? host.Init ?? (source ? undefined : true),
    NetworkMode: networkMode,
    PortBindings: Object.keys(bindings).length > 0 ? bindings : undefined,
    PublishAllPorts: host.PublishAllPorts || undefined,
    Memory: positive(memory),
    // A copied swap limit belongs to the copied memory limit; with a declared one Docker picks the default.
    MemorySwap: template?.memoryBytes === undefined ? positive(host.MemorySwap) : undefined,
    MemoryReservation: positive(host.MemoryReservation),
    NanoCpus: positive(nanoCpus),
    // Docker refuses NanoCpus together with a CPU period/quota; a declared nanoCpus replaces them.
    CpuQuota: template?.nanoCpus === undefined ? positive(host.CpuQuota) : undefined,
    CpuPeriod: template?.nanoCpus === undefined ? positive(host.CpuPeriod) : undefined,
    CpuShares: positive(host.CpuShares),
    CpusetCpus: host.CpusetCpus || undefined,
    PidsLimit: positive(host.PidsLimit),
    Ulimits: host.Ulimits ?? undefined,
    RestartPolicy: host.RestartPolicy,
    LogConfig: host.LogConfig,
  };

  const stopSettings = (cfg ?? {}) as { StopSignal?: string; StopTimeout?: number };
  const create: Docker.ContainerCreateOptions = {
    name: o.name,
    Image: image,
    Cmd: template?.cmd ?? cfg?.Cmd ?? undefined,
    Entrypoint: template?.entrypoint ?? cfg?.Entrypoint ?? undefined,
    Env: envMerge(cfg?.Env ?? [], template?.env),
    Labels: labels,
    ExposedPorts: Object.keys(exposed).length > 0 ? exposed : undefined,
    WorkingDir: cfg?.WorkingDir || undefined,
    User: cfg?.User || undefined,
    Tty: cfg?.Tty ?? false,
    Healthcheck: cfg?.Healthcheck,
    StopSignal: stopSettings.StopSignal,
    StopTimeout: stopSettings.StopTimeout,
    HostConfig: hostConfig,
    NetworkingConfig: primary ? { EndpointsConfig: { [primary.name]: primary.aliases.length > 0 ? { Aliases: primary.aliases } : {} } } : undefined,
  };
  return { create, extraNetworks: extra };
}

/** Creates the replica, attaches its other networks and starts it; a replica that did not start is removed again. */
export async function startReplica(docker: Docker, spec: ReplicaSpec): Promise<Docker.ContainerInspectInfo> {
  let container: Docker.Container;
  try {
    container = await docker.createContainer(spec.create);
  } catch (err) {
    throw dockerError(`create ${spec.create.name ?? ''}`, err);
  }
  try {
    for (const n of spec.extraNetworks) {
      await docker.getNetwork(n.name).connect({ Container: container.id, EndpointConfig: n.aliases.length > 0 ? { Aliases: n.aliases } : {} });
    }
    await container.start();
    return await container.inspect();
  } catch (err) {
    await container.remove({ force: true }).catch(() => undefined);
    throw dockerError(`start ${spec.create.name ?? container.id}`, err);
  }
}

/** Stops (SIGTERM, then SIGKILL after `timeoutSeconds`) and removes a replica; one already stopped or gone is fine. */
export async function stopReplica(docker: Docker, id: string, timeoutSeconds: number): Promise<void> {
  const c = docker.getContainer(id);
  try {
    await c.stop({ t: timeoutSeconds });
  } catch (err) {
    const status = statusOf(err);
    if (status === 404) return;
    if (status !== 304) throw dockerError(`stop ${id.slice(0, 12)}`, err);
  }
  try {
    await c.remove({ force: true });
  } catch (err) {
    const status = statusOf(err);
    // 404: gone already; 409: removal already in progress.
    if (status !== 404 && status !== 409) throw dockerError(`remove ${id.slice(0, 12)}`, err);
  }
}

/**
 * A running container as a template for a replica on another node (nodes.ts rule 7):
 * image, command, entrypoint, env, labels, published ports (dynamic host ports), limits
 * and init. Networks are left out: they are the node's own.
 */
export function templateOf(info: Docker.ContainerInspectInfo): AppTemplate {
  const cfg = info.Config;
  const env: Record<string, string> = {};
  for (const kv of cfg.Env ?? []) {
    const at = kv.indexOf('=');
    if (at > 0) env[kv.slice(0, at)] = kv.slice(at + 1);
  }
  const publish: NonNullable<AppTemplate['publish']> = [];
  for (const [key, list] of Object.entries((info.HostConfig.PortBindings ?? {}) as Record<string, Array<{ HostIp?: string }> | null>)) {
    const [port, protocol = 'tcp'] = key.split('/');
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') continue;
    for (const b of list ?? []) publish.push({ containerPort: Number(port), protocol, hostIp: b.HostIp || '127.0.0.1' });
  }
  const t: AppTemplate = { image: cfg.Image, env, labels: { ...(cfg.Labels ?? {}) }, publish };
  const cmd = cfg.Cmd as string[] | string | null | undefined;
  if (Array.isArray(cmd) && cmd.length > 0) t.cmd = cmd;
  const entrypoint = cfg.Entrypoint as string[] | string | null | undefined;
  if (Array.isArray(entrypoint)) t.entrypoint = entrypoint;
  if (info.HostConfig.Memory) t.memoryBytes = info.HostConfig.Memory;
  if (info.HostConfig.NanoCpus) t.nanoCpus = info.HostConfig.NanoCpus;
  if (info.HostConfig.Init !== undefined && info.HostConfig.Init !== null) t.init = info.HostConfig.Init;
  return t;
}
