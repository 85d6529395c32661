/**
 * Docker container events → lifecycle events: the tenant's "container start" and
 * "operation" logs, and the input of routes, usage and the scaler.
 */
import type Docker from 'dockerode';
import type { LifecycleEvent, NetworkAttachment, PortBinding } from '../schemas/events.js';
import { eventId, type Identity } from './identity.js';

/** The container actions that become lifecycle events. */
export const LIFECYCLE_ACTIONS = new Set(['create', 'start', 'restart', 'die', 'oom', 'kill', 'stop', 'destroy', 'health_status', 'pause', 'unpause']);

export interface DockerEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
  time?: number;
  timeNano?: number;
}

/** `health_status: healthy` → `health_status`. */
export function baseAction(action: string): string {
  const i = action.indexOf(':');
  return i < 0 ? action : action.slice(0, i);
}

/** What we keep of `inspect`: enough to describe a container after it is destroyed. */
export interface ContainerFacts {
  id: string;
  name: string;
  image: string;
  labels: Record<string, string>;
  tty: boolean;
  running: boolean;
  pid: number;
  networks: NetworkAttachment[];
  ports: PortBinding[];
  limits: LifecycleEvent['limits'];
  startedAt: string;
  finishedAt: string;
}

export function factsFromInspect(info: Docker.ContainerInspectInfo): ContainerFacts {
  const nets = info.NetworkSettings?.Networks ?? {};
  const ports: PortBinding[] = [];
  for (const [spec, bindings] of Object.entries(info.NetworkSettings?.Ports ?? {})) {
    const [port, protocol = 'tcp'] = spec.split('/');
    for (const b of (bindings as Array<{ HostIp: string; HostPort: string }> | null) ?? []) {
      ports.push({ container_port: Number(port), protocol, host_ip: b.HostIp, host_port: Number(b.HostPort) });
    }
  }
  return {
    id: info.Id,
    name: info.Name.replace(/^\//, ''),
    image: info.Config?.Image ?? info.Image,
    labels: info.Config?.Labels ?? {},
    tty: Boolean(info.Config?.Tty),
    running: Boolean(info.State?.Running),
    pid: info.State?.Pid ?? 0,
    networks: Object.entries(nets).map(([name, n]) => ({ name, network_id: n.NetworkID ?? '', ip_address: n.IPAddress ?? '', mac_address: (n.MacAddress ?? '').toLowerCase() })),
    ports,
    limits: { nano_cpus: info.HostConfig?.NanoCpus ?? 0, memory_bytes: info.HostConfig?.Memory ?? 0, pids: info.HostConfig?.PidsLimit ?? 0 },
    startedAt: info.State?.StartedAt ?? '',
    finishedAt: info.State?.FinishedAt ?? '',
  };
}

export function toLifecycleEvent(e: DockerEvent, facts: ContainerFacts | undefined, identity: Identity, node: string): LifecycleEvent {
  const action = e.Action ?? e.status ?? '';
  const attrs = e.Actor?.Attributes ?? {};
  const id = e.Actor?.ID ?? e.id ?? facts?.id ?? '';
  const tsNano = e.timeNano ?? (e.time ?? 0) * 1e9;
  const exit = attrs.exitCode;
  const health = baseAction(action) === 'health_status' ? action.slice(action.indexOf(':') + 1).trim() : null;
  const attributes: Record<string, string> = {};
  for (const k of ['signal', 'execDuration', 'oldName']) if (attrs[k] !== undefined) attributes[k] = attrs[k];
  return {
    event_id: eventId('lifecycle', id, action, tsNano),
    tenant: identity.tenant,
    app: identity.app,
    node,
    container_id: id,
    container_name: facts?.name ?? attrs.name ?? '',
    ts: Math.floor(tsNano / 1e6),
    action: baseAction(action),
    actor: 'docker',
    exit_code: exit === undefined || exit === '' ? null : Number(exit),
    health,
    image: facts?.image ?? attrs.image ?? '',
    labels: facts?.labels ?? labelsFromAttributes(attrs),
    networks: facts?.networks ?? [],
    ports: facts?.ports ?? [],
    limits: facts?.limits ?? { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: null,
    attributes,
  };
}

/** Docker puts a container's labels among the event's attributes, next to image, name and exitCode. */
function labelsFromAttributes(attrs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!['image', 'name', 'exitCode', 'signal', 'execDuration'].includes(k)) out[k] = v;
  return out;
}
