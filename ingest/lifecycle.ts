/**
 * Docker container events → lifecycle events: the tenant's "container start" and
 * "operation" logs, and the input of routes, usage and the scaler.
 */
import type { DeadLetter, LifecycleEvent } from '../schemas/events.js';
import type { ContainerFacts } from '../lib/container.js';
import { eventId } from '../lib/event-id.js';
import { identityRecord, type Identity } from '../lib/identity.js';

/** The container actions that become lifecycle events. */
export const LIFECYCLE_ACTIONS = new Set(['create', 'start', 'restart', 'die', 'oom', 'kill', 'stop', 'destroy', 'health_status', 'pause', 'unpause']);

/** Actions after which a container's ports, networks or labels may be new: its facts are read again (`inspect`). */
const REFRESHING_ACTIONS = new Set(['create', 'start', 'restart', 'unpause', 'health_status']);

/**
 * Whether an event's container must be inspected, or the facts already known describe it.
 * Only the actions that can change what a lifecycle event carries need a fresh read. The
 * others (kill, die, stop, oom, pause, destroy) take the known facts: a container being
 * killed or removed holds Docker's container lock, an inspect then waits for it (100-400 ms
 * here), and events are handled one at a time, so every other container's start waited too.
 */
export function needsInspect(action: string, known: boolean): boolean {
  if (REFRESHING_ACTIONS.has(action)) return true;
  return !known && action !== 'destroy';
}

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

export function toLifecycleEvent(e: DockerEvent, facts: ContainerFacts | undefined, identity: Identity, node: string): LifecycleEvent {
  const action = e.Action ?? e.status ?? '';
  const attrs = e.Actor?.Attributes ?? {};
  const id = e.Actor?.ID ?? e.id ?? facts?.id ?? '';
  const tsNano = e.timeNano ?? (e.time ?? 0) * 1e9;
  const exit = attrs.exitCode;
  const health = baseAction(action) === 'health_status' ? action.slice(action.indexOf(':') + 1).trim() : null;
  const attributes: Record<string, string> = {};
  for (const k of ['signal', 'execDuration', 'oldName']) if (attrs[k] !== undefined) attributes[k] = attrs[k];
  const labels = boundedLabels(facts?.labels ?? labelsFromAttributes(attrs));
  if (labels.cut.length > 0) attributes.labels_cut = labels.cut.join(',').slice(0, MAX_LABEL_VALUE_CHARS);
  if (labels.omitted > 0) attributes.labels_omitted = String(labels.omitted);
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
    labels: labels.kept,
    networks: facts?.networks ?? [],
    ports: facts?.ports ?? [],
    limits: facts?.limits ?? { nano_cpus: 0, memory_bytes: 0, pids: 0 },
    message: null,
    attributes,
    identity: identityRecord(identity),
  };
}

/** Docker puts a container's labels among the event's attributes, next to image, name and exitCode. */
function labelsFromAttributes(attrs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (!['image', 'name', 'exitCode', 'signal', 'execDuration'].includes(k)) out[k] = v;
  return out;
}

/** Longest label value copied into a lifecycle event, in characters; a longer one is cut and named in `attributes.labels_cut`. */
export const MAX_LABEL_VALUE_CHARS = 4096;
/** Most characters of label keys and values in one lifecycle event; labels beyond it are left out and counted in `attributes.labels_omitted`. */
export const MAX_LABELS_CHARS = 64 * 1024;

/**
 * A container's labels as carried by its lifecycle events, bounded: Docker accepts
 * labels of any size, and one 2 MiB label must not make every event of its container
 * too large for Kafka (the broker refuses messages over 1 MiB by default, and the
 * collector's one Kafka queue would stall behind it). Shorter labels are taken first,
 * so the identity labels (at most 63 characters, an lb-host at most 253) stay in unless
 * a container has about a thousand labels as short as they are.
 */
export function boundedLabels(labels: Record<string, string>): { kept: Record<string, string>; cut: string[]; omitted: number } {
  const size = (k: string) => k.length + labels[k]!.length;
  const keys = Object.keys(labels).sort((a, b) => size(a) - size(b) || (a < b ? -1 : a > b ? 1 : 0));
  const chosen = new Map<string, string>();
  const cut: string[] = [];
  let omitted = 0;
  let used = 0;
  for (const k of keys) {
    let v = labels[k]!;
    if (v.length > MAX_LABEL_VALUE_CHARS) {
      v = v.slice(0, MAX_LABEL_VALUE_CHARS);
      cut.push(k.slice(0, 256));
    }
    if (k.length > MAX_LABEL_VALUE_CHARS || used + k.length + v.length > MAX_LABELS_CHARS) {
      omitted++;
      continue;
    }
    used += k.length + v.length;
    chosen.set(k, v);
  }
  // In Docker's order, as before.
  const kept: Record<string, string> = {};
  for (const k of Object.keys(labels)) if (chosen.has(k)) kept[k] = chosen.get(k)!;
  return { kept, cut, omitted };
}

/**
 * The dead letter of a container whose identity labels are refused: no Kafka message
 * is involved, so the source is Docker (`source_topic` `docker`, position 0) and the
 * payload is the container's labels under the prefix, as JSON (values cut to 256
 * characters). One per container and problem (the id is derived from both).
 */
export function refusedContainerLetter(f: Pick<ContainerFacts, 'id' | 'name' | 'labels'>, problem: string, prefix: string, node: string, now: number): DeadLetter {
  const mine: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.labels)) if (k.startsWith(prefix)) mine[k.slice(0, 256)] = v.slice(0, 256);
  return {
    event_id: eventId('refused_container', f.id, problem),
    tenant: '',
    app: '',
    node,
    container_id: f.id,
    ts: now,
    source_topic: 'docker',
    source_partition: 0,
    source_offset: 0,
    source_timestamp: now,
    consumer_group: 'collector',
    key: Buffer.from(f.id),
    payload: Buffer.from(JSON.stringify(mine)),
    error_code: 'bad_label',
    reason: `container ${f.name} (${f.id.slice(0, 12)}) not collected: ${problem}`,
  };
}
