/**
 * What logmeter keeps of a container's `inspect`: enough to describe it after it is
 * destroyed. Read by the collector (lifecycle events) and the scaler (its replicas).
 */
import type Docker from 'dockerode';
import type { LifecycleEvent, NetworkAttachment, PortBinding } from '../schemas/events.js';

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

/** Docker's port map (`"80/tcp": [{HostIp, HostPort}]`, as in `NetworkSettings.Ports` or `HostConfig.PortBindings`) as bindings. */
export function portBindings(map: unknown): PortBinding[] {
  const ports: PortBinding[] = [];
  for (const [spec, bindings] of Object.entries((map ?? {}) as Record<string, Array<{ HostIp?: string; HostPort?: string }> | null>)) {
    const [port, protocol = 'tcp'] = spec.split('/');
    for (const b of bindings ?? []) ports.push({ container_port: Number(port), protocol, host_ip: b.HostIp ?? '', host_port: Number(b.HostPort) });
  }
  return ports;
}

export function factsFromInspect(info: Docker.ContainerInspectInfo): ContainerFacts {
  const nets = info.NetworkSettings?.Networks ?? {};
  const ports = portBindings(info.NetworkSettings?.Ports);
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

