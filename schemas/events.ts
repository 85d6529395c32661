/**
 * TypeScript shapes of the Avro records in `avro/` (current versions). Kept by hand
 * next to the .avsc files; `test/schemas.test.ts` checks every field matches.
 * Timestamps are milliseconds since the epoch; 64-bit counters are JS numbers (exact
 * below 2^53, i.e. 8 PiB).
 */

/** Fields every event carries. */
export interface EventHeader {
  event_id: string;
  tenant: string;
  app: string;
  node: string;
  container_id: string;
  ts: number;
}

export type Stream = 'stdout' | 'stderr';

export interface LogLine extends EventHeader {
  container_name: string;
  ts_nanos: number;
  seq: number;
  stream: Stream;
  tty: boolean;
  line: Buffer;
  original_length: number;
  truncated: boolean;
  invalid_utf8: boolean;
  log_format: string | null;
}

export interface NetworkAttachment {
  name: string;
  network_id: string;
  ip_address: string;
  mac_address: string;
}

export interface PortBinding {
  container_port: number;
  protocol: string;
  host_ip: string;
  host_port: number;
}

/** A container's identity as the collector resolved it from its labels (lifecycle version 2). */
export interface ContainerIdentity {
  log_format: string | null;
  lb_host: string | null;
  lb_port: number | null;
  size: string | null;
}

export interface LifecycleEvent extends EventHeader {
  container_name: string;
  action: string;
  actor: string;
  exit_code: number | null;
  health: string | null;
  image: string;
  labels: Record<string, string>;
  networks: NetworkAttachment[];
  ports: PortBinding[];
  limits: { nano_cpus: number; memory_bytes: number; pids: number };
  message: string | null;
  attributes: Record<string, string>;
  /**
   * Resolved once by the collector; null when written with version 1 or by an operation
   * that does not know the labels (read it through lib/identity.ts identityOf). Optional
   * when writing: the schema's default (null) is written then.
   */
  identity?: ContainerIdentity | null;
}

export type TrafficClass = 'internal' | 'external' | 'unknown';

export interface InterfaceCounters {
  name: string;
  network: string | null;
  traffic_class: TrafficClass;
  rx_bytes: number;
  tx_bytes: number;
  rx_packets: number;
  tx_packets: number;
}

export interface StatsSample extends EventHeader {
  container_name: string;
  size: string | null;
  interfaces: InterfaceCounters[];
  cpu_usage_ns: number;
  memory_bytes: number;
  memory_limit_bytes: number;
  blkio_read_bytes: number;
  blkio_write_bytes: number;
}

export interface HttpRequest extends EventHeader {
  source_event_id: string;
  format: string;
  host: string;
  method: string;
  path: string;
  status: number;
  bytes: number;
  request_time_ms: number;
  upstream_time_ms: number | null;
  queue_time_ms: number | null;
  backend_queue: number | null;
  server_queue: number | null;
  backend: string | null;
  server: string | null;
  client_ip: string | null;
}

export interface UsageRecord extends EventHeader {
  period: string;
  meter: string;
  unit: string;
  quantity: number;
  dimensions: Record<string, string>;
}

export interface WindowStats {
  window_ms: number;
  requests: number;
  rate_rps: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  rate_5xx: number;
  rate_504: number;
  queue_time_p95_ms: number | null;
  queue_length_max: number | null;
  in_flight: number;
}

export interface AutoscaleSignal extends EventHeader {
  version: number;
  host: string;
  stable: WindowStats;
  panic: WindowStats;
  current_replicas: number;
  recommended_replicas: number;
  mode: 'stable' | 'panic';
  reason: string;
  /**
   * When the emitting instance took ownership of the app's http partition (version 2); its
   * signals are all later, and successive owners' periods do not overlap. 0 when written
   * with version 1. Optional when writing: the schema's default (0) is written then.
   */
  owner_since?: number;
}

export interface Upstream {
  container_id: string;
  address: string;
  port: number;
}

export interface RouteSet extends EventHeader {
  host: string;
  version: number;
  upstreams: Upstream[];
  reason: string;
}

export interface DeadLetter extends EventHeader {
  source_topic: string;
  source_partition: number;
  source_offset: number;
  source_timestamp: number;
  consumer_group: string;
  key: Buffer | null;
  payload: Buffer | null;
  error_code: string;
  reason: string;
}

/** Logical topic name → the event it carries. Full topic name = prefix + logical name. */
export interface EventMap {
  logs: LogLine;
  lifecycle: LifecycleEvent;
  stats: StatsSample;
  http: HttpRequest;
  usage: UsageRecord;
  autoscale: AutoscaleSignal;
  routes: RouteSet;
  dlq: DeadLetter;
}

export type TopicName = keyof EventMap;

export const TOPIC_NAMES: readonly TopicName[] = ['logs', 'lifecycle', 'stats', 'http', 'usage', 'autoscale', 'routes', 'dlq'];
