/**
 * The client side of bench/routes.ts, in a process of its own (forked by it), so that
 * nothing it times shares an event loop with the pipeline being measured: a busy
 * pipeline would otherwise delay the very request that finds the route live, and the
 * by-hand baseline would pay for the pipeline's work.
 *
 * Protocol over the IPC channel: the parent sends `start` with a created container,
 * its probe targets and (for the baseline) the by-hand route. The child starts one
 * request loop per target, calls `docker start`, sends the by-hand runtime API commands
 * as soon as that returns, and answers `result` once every target answered 200 with the
 * expected body (or the deadline passed): per target when the first such answer
 * arrived (epoch ms, sub-millisecond) and how many requests it took.
 *
 * Probing: one request at a time per target, on a keep-alive connection, `gapMs`
 * between requests, so a time found is at most one request plus `gapMs` late. A request
 * that takes longer than `requestTimeoutMs` is abandoned and another one sent: HAProxy
 * waits up to a second before retrying a server that refused (the app not listening
 * yet); a client that gives up sooner finds a route that just became good without it.
 */
import http from 'node:http';
import { HaproxyRuntimeApi } from '../../processors/routes/runtime-api.js';
import { nowMs } from './common.js';
import { docker } from './containers.js';

export interface ProbeTarget {
  name: string;
  port: number;
  /** Host header (HAProxy picks the backend by it). */
  host: string;
  /** Body (trimmed) that counts as served. */
  expect: string;
  /**
   * Start asking only once `docker start` returned. For the container's own port: asked
   * earlier, docker-proxy accepts and forwards to the container's address before its
   * network is up, the host's neighbour (ARP) entry for that address fails, and every
   * connection waits for it to be retried — about 700 ms here, the probe's own doing.
   */
  afterStart?: boolean;
}

/** A new host routed by hand: `add server`, `enable server`, `add map`, as the applier does. */
export interface ByHand {
  adminSocket: string;
  mapFile: string;
  backend: string;
  server: string;
  port: number;
  host: string;
}

export type ClientRequest =
  | { type: 'start'; id: number; containerId: string; targets: ProbeTarget[]; byHand?: ByHand; timeoutMs: number; gapMs: number; requestTimeoutMs: number }
  /** The removal path (bench/routes.ts --load): kill the container, then ask `target` until an answer is not the container's own. */
  | { type: 'kill'; id: number; containerId: string; target: ProbeTarget; timeoutMs: number; gapMs: number; requestTimeoutMs: number }
  | { type: 'exit' };

export interface ProbeResult {
  /** Epoch ms of the first answer that counted; null when none came before the deadline. */
  servedAt: number | null;
  requests: number;
  /** The last answer that did not count (status or error), for the report of a failure. */
  last: string;
  /** The last few requests before the one that counted: sent (epoch ms), took (ms), what came back. */
  trail: Array<{ sent: number; took: number; what: string }>;
}

/** Requests kept in `ProbeResult.trail`. */
const TRAIL = 6;

export type ClientMessage =
  | { type: 'result'; id: number; startCalled: number; startReturned: number; byHandDone: number | null; results: Record<string, ProbeResult> }
  /** `killCalled`: when `docker kill` was called (Docker's kill and die events can reach the pipeline before the call returns: dockerd waits for the container's end). */
  | { type: 'killed'; id: number; killCalled: number; killReturned: number; goneAt: number | null; requests: number; last: string }
  | { type: 'error'; id: number; message: string };

function request(agent: http.Agent, t: ProbeTarget, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: t.port, path: '/', headers: { host: t.host }, agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end();
  });
}

async function probe(t: ProbeTarget, deadline: number, gapMs: number, requestTimeoutMs: number): Promise<ProbeResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const out: ProbeResult = { servedAt: null, requests: 0, last: '', trail: [] };
  const note = (sent: number, what: string) => {
    out.trail.push({ sent, took: nowMs() - sent, what });
    if (out.trail.length > TRAIL) out.trail.shift();
  };
  try {
    while (nowMs() < deadline) {
      out.requests++;
      const sent = nowMs();
      try {
        const r = await request(agent, t, requestTimeoutMs);
        if (r.status === 200 && r.body === t.expect) {
          out.servedAt = nowMs();
          note(sent, '200');
          return out;
        }
        out.last = `${r.status} ${r.body.slice(0, 80)}`;
      } catch (err) {
        out.last = err instanceof Error ? err.message : String(err);
      }
      note(sent, out.last.slice(0, 40));
      await new Promise((r) => setTimeout(r, gapMs));
    }
    return out;
  } finally {
    agent.destroy();
  }
}

const apis = new Map<string, HaproxyRuntimeApi>();

async function start(m: Extract<ClientRequest, { type: 'start' }>): Promise<ClientMessage> {
  const deadline = nowMs() + m.timeoutMs;
  const ask = (targets: ProbeTarget[]) => targets.map((t) => probe(t, deadline, m.gapMs, m.requestTimeoutMs).then((r) => [t.name, r] as const));
  const running = ask(m.targets.filter((t) => !t.afterStart));
  // The probes are asking (each sent its first request) before the container starts.
  await new Promise((r) => setImmediate(r));
  const startCalled = nowMs();
  await docker.getContainer(m.containerId).start();
  const startReturned = nowMs();
  running.push(...ask(m.targets.filter((t) => t.afterStart)));
  let byHandDone: number | null = null;
  if (m.byHand) {
    const h = m.byHand;
    let api = apis.get(h.adminSocket);
    if (!api) apis.set(h.adminSocket, (api = new HaproxyRuntimeApi(h.adminSocket)));
    await api.addServer(h.backend, h.server, '127.0.0.1', h.port);
    await api.enableServer(h.backend, h.server);
    await api.addMapEntry(h.mapFile, h.host, h.backend);
    byHandDone = nowMs();
  }
  const results = Object.fromEntries(await Promise.all(running));
  return { type: 'result', id: m.id, startCalled, startReturned, byHandDone, results };
}

/** Kills the container, then asks until an answer (any status, or a failed request) is not the container's own body: no request reaches it any more. */
async function kill(m: Extract<ClientRequest, { type: 'kill' }>): Promise<ClientMessage> {
  const killCalled = nowMs();
  await docker.getContainer(m.containerId).kill();
  const killReturned = nowMs();
  const deadline = killReturned + m.timeoutMs;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let requests = 0;
  let last = '';
  try {
    while (nowMs() < deadline) {
      requests++;
      try {
        const r = await request(agent, m.target, m.requestTimeoutMs);
        if (!(r.status === 200 && r.body === m.target.expect)) return { type: 'killed', id: m.id, killCalled, killReturned, goneAt: nowMs(), requests, last: `${r.status} ${r.body.slice(0, 80)}` };
        last = '200 (still the container)';
      } catch (err) {
        // No answer at all within the request timeout is not "gone": HAProxy may be retrying it.
        last = err instanceof Error ? err.message : String(err);
      }
      await new Promise((r) => setTimeout(r, m.gapMs));
    }
    return { type: 'killed', id: m.id, killCalled, killReturned, goneAt: null, requests, last };
  } finally {
    agent.destroy();
  }
}

const send = (m: ClientMessage) => new Promise<void>((r) => process.send!(m, () => r()));

process.on('message', (m: ClientRequest) => {
  if (m.type === 'exit') {
    for (const api of apis.values()) api.close();
    process.exit(0);
  }
  void (m.type === 'kill' ? kill(m) : start(m)).then(send, (err: unknown) => send({ type: 'error', id: m.id, message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
process.on('disconnect', () => process.exit(0));
