/**
 * Lines dropped by the per-tenant limits are never lost silently: they are counted per
 * tenant and container and reported, once per interval, as a lifecycle event
 * (`logs_dropped`, actor `collector`) the tenant sees in its operation log. A dropped
 * line counts as handled (its checkpoint may move past it) only once the report that
 * counts it is acknowledged by Kafka.
 */
import type { AvroCodec } from '../schemas/codec.js';
import type { LifecycleEvent } from '../schemas/events.js';
import type { Sender } from './sender.js';
import { eventId } from '../lib/event-id.js';
import { type Identity } from '../lib/identity.js';

interface Window {
  identity: Identity;
  containerId: string;
  containerName: string;
  reason: string;
  detail: string;
  lines: number;
  bytes: number;
  from: number;
  acks: Array<() => void>;
}

export class DropReporter {
  private windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: { sender: Sender; codec: AvroCodec; topic: string; node: string; intervalMs: number; clock?: () => number },
  ) {}

  start(): void {
    this.timer ??= setInterval(() => this.report(), this.deps.intervalMs);
    this.timer.unref();
  }

  add(identity: Identity, containerId: string, containerName: string, reason: string, detail: string, bytes: number, ack: () => void): void {
    const key = `${containerId}\0${reason}`;
    let w = this.windows.get(key);
    if (!w) {
      w = { identity, containerId, containerName, reason, detail, lines: 0, bytes: 0, from: this.now(), acks: [] };
      this.windows.set(key, w);
    }
    w.lines++;
    w.bytes += bytes;
    w.acks.push(ack);
  }

  /** Sends one report per open window. */
  report(): void {
    const windows = this.windows;
    this.windows = new Map();
    const to = this.now();
    for (const w of windows.values()) {
      const ev: LifecycleEvent = {
        event_id: eventId('logs_dropped', w.containerId, w.reason, w.from, to, w.lines),
        tenant: w.identity.tenant,
        app: w.identity.app,
        node: this.deps.node,
        container_id: w.containerId,
        container_name: w.containerName,
        ts: to,
        action: 'logs_dropped',
        actor: 'collector',
        exit_code: null,
        health: null,
        image: '',
        labels: {},
        networks: [],
        ports: [],
        limits: { nano_cpus: 0, memory_bytes: 0, pids: 0 },
        message: `${w.lines} lines (${w.bytes} bytes) dropped: ${w.detail}`,
        attributes: { reason: w.reason, lines: String(w.lines), bytes: String(w.bytes), window_start: String(w.from), window_end: String(to) },
      };
      const acks = w.acks;
      this.deps.sender.enqueue({ topic: this.deps.topic, key: w.containerId, value: this.deps.codec.encode('lifecycle', ev), onAck: () => acks.forEach((a) => a()) });
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.report();
  }

  private now(): number {
    return (this.deps.clock ?? Date.now)();
  }
}
