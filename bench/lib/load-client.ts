/**
 * Open-loop HTTP load in a process of its own (forked by bench/autoscale.ts): requests
 * go out at a fixed rate whatever their latency (a closed loop of N clients would slow
 * down with the app and hide a latency step), each one timed, so the parent knows when
 * the first answer with a new latency arrived: the earliest moment anyone could know.
 *
 * Protocol over the IPC channel: `run` starts sending `rate` requests per second to
 * `127.0.0.1:port` with the given Host header and path (answers `running`); `stop`
 * stops sending, waits for the requests in flight (each bounded by `requestTimeoutMs`)
 * and answers `done` with every request's start and end (epoch ms) and status
 * (0 = failed or timed out).
 */
import http from 'node:http';
import { nowMs } from './common.js';

export type LoadRequest =
  | { type: 'run'; id: number; port: number; host: string; path: string; rate: number; requestTimeoutMs: number }
  | { type: 'stop'; id: number }
  | { type: 'exit' };

/** [start, end, status] of one request. */
export type LoadSample = [number, number, number];

export type LoadMessage = { type: 'running'; id: number } | { type: 'done'; id: number; samples: LoadSample[] };

interface Run {
  stop(): Promise<LoadSample[]>;
}

function run(m: Extract<LoadRequest, { type: 'run' }>): Run {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const samples: LoadSample[] = [];
  const inFlight = new Set<Promise<void>>();
  const every = 1000 / m.rate;
  const t0 = nowMs();
  let sent = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const one = () => {
    const start = nowMs();
    const p = new Promise<void>((resolve) => {
      const done = (status: number) => {
        samples.push([start, nowMs(), status]);
        resolve();
      };
      const r = http.request({ host: '127.0.0.1', port: m.port, path: m.path, headers: { host: m.host }, agent, timeout: m.requestTimeoutMs }, (res) => {
        res.resume();
        res.on('end', () => done(res.statusCode ?? 0));
        res.on('error', () => done(0));
      });
      r.on('timeout', () => r.destroy(new Error('timeout')));
      r.on('error', () => done(0));
      r.end();
    });
    inFlight.add(p);
    void p.then(() => inFlight.delete(p));
  };
  // Scheduled against the start time, not from one request to the next: no drift, and a
  // late timer sends what is due at once.
  const tick = () => {
    if (stopped) return;
    const due = Math.floor((nowMs() - t0) / every) + 1;
    while (sent < due) {
      sent++;
      one();
    }
    timer = setTimeout(tick, Math.max(0, t0 + sent * every - nowMs()));
  };
  tick();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await Promise.all([...inFlight]);
      agent.destroy();
      return samples;
    },
  };
}

const runs = new Map<number, Run>();
const send = (msg: LoadMessage) => new Promise<void>((r) => process.send!(msg, () => r()));

process.on('message', (m: LoadRequest) => {
  if (m.type === 'exit') process.exit(0);
  if (m.type === 'run') {
    runs.set(m.id, run(m));
    void send({ type: 'running', id: m.id });
    return;
  }
  const r = runs.get(m.id);
  runs.delete(m.id);
  void (r ? r.stop() : Promise.resolve([])).then((samples) => send({ type: 'done', id: m.id, samples }));
});
process.on('disconnect', () => process.exit(0));
