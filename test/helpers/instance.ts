/**
 * One processor instance as a child process, for the scale-out tests (N instances of one
 * consumer group, one of them killed with SIGKILL).
 *
 * Child side, `runInstance(start)`: builds the schema codec and the bus from the config
 * in its environment (the test namespace's variables), starts the instance, prints one
 * ready line, answers commands read from stdin, and on SIGTERM (or stdin closed: the test
 * is gone) stops the instance and the bus and exits 0.
 * Parent side, `spawnInstance(script, …)`: starts such a script under tsx, resolves once
 * it printed its ready line, sends commands, stops it with SIGTERM or kills it with
 * SIGKILL; `stopInstances()` kills whatever a test left running.
 *
 * Protocol, one JSON object a line: stdout `{"ready":true}` once, then for each stdin
 * line `{"id":n,"command":"…","arg":…}` a line `{"id":n,"result":…}` or
 * `{"id":n,"error":"…"}`. Logs go to stderr (kept, the tail shown when a child fails).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Registry } from 'prom-client';
import { loadConfig, type Config } from '../../app/config.js';
import type { EventBus } from '../../lib/bus/bus.js';
import { errorMessage } from '../../lib/errors.js';
import { createLogger, type Logger } from '../../lib/logger.js';
import { createRegistry } from '../../lib/metrics.js';
import { busFor, schemaSource } from '../../lib/runtime.js';
import { AvroCodec } from '../../schemas/codec.js';
import { ROOT } from './env.js';

export interface InstanceContext {
  config: Config;
  bus: EventBus;
  logger: Logger;
  registry: Registry;
}

/** What a child's `start` returns: how to stop it, and the commands it answers (results must be JSON). */
export interface Instance {
  stop(): Promise<void>;
  commands?: Record<string, (arg: unknown) => unknown>;
}

/** The child side: runs one instance until SIGTERM. */
export async function runInstance(start: (ctx: InstanceContext) => Promise<Instance>): Promise<void> {
  const config = loadConfig({ env: process.env });
  const logger = createLogger(config.log.level, 2);
  const registry = createRegistry(false);
  const bus = busFor(config, await AvroCodec.create(schemaSource(config)), logger, registry);
  const instance = await start({ config, bus, logger, registry });
  const write = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await instance.stop();
      await bus.close();
    })().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err: errorMessage(err) }, 'instance did not stop cleanly');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  const lines = createInterface({ input: process.stdin });
  lines.on('close', stop);
  lines.on('line', (line) => {
    const { id, command, arg } = JSON.parse(line) as { id: number; command: string; arg?: unknown };
    const run = instance.commands?.[command];
    Promise.resolve()
      .then(() => {
        if (!run) throw new Error(`unknown command ${command}`);
        return run(arg);
      })
      .then(
        (result) => write({ id, result: result ?? null }),
        (err: unknown) => write({ id, error: errorMessage(err) }),
      );
  });
  write({ ready: true });
}

export interface ChildInstance {
  readonly name: string;
  readonly child: ChildProcess;
  /** Sends a command and resolves with its result (rejects with its error, or when the child exits first). */
  command<T>(command: string, arg?: unknown): Promise<T>;
  /** SIGTERM, then the exit code once it exited. */
  stop(): Promise<number | null>;
  /** SIGKILL, resolved once it is gone. */
  kill(): Promise<void>;
  /** The last lines it logged (stderr). */
  logTail(): string;
}

const running = new Set<ChildProcess>();

/** The parent side: starts `script` (a file under test/helpers) with `args` and `env`; resolves once it is ready. */
export async function spawnInstance(name: string, script: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<ChildInstance> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  const logTail = () => stderr.split('\n').slice(-15).join('\n');
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  let nextId = 0;
  let ready: () => void = () => undefined;
  const readyP = new Promise<void>((resolve) => (ready = resolve));
  createInterface({ input: child.stdout }).on('line', (line) => {
    let msg: { ready?: boolean; id?: number; result?: unknown; error?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    if (msg.ready) ready();
    const p = msg.id === undefined ? undefined : pending.get(msg.id);
    if (!p || msg.id === undefined) return;
    pending.delete(msg.id);
    if (msg.error !== undefined) p.reject(new Error(`${name}: ${msg.error}`));
    else p.resolve(msg.result);
  });
  void exited.then((code) => {
    for (const p of pending.values()) p.reject(new Error(`${name} exited (${code}) before answering\n${logTail()}`));
    pending.clear();
  });
  const gone = exited.then((code) => {
    throw new Error(`${name} exited (${code}) before it was ready\n${logTail()}`);
  });
  await Promise.race([readyP, gone]);
  gone.catch(() => undefined);
  return {
    name,
    child,
    logTail,
    command: <T>(command: string, arg?: unknown) =>
      new Promise<T>((resolve, reject) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          reject(new Error(`${name} is not running`));
          return;
        }
        const id = nextId++;
        pending.set(id, { resolve: (v) => resolve(v as T), reject });
        child.stdin.write(`${JSON.stringify({ id, command, arg })}\n`);
      }),
    stop: () => {
      child.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Kills every child instance still running (a test's `after`). */
export async function stopInstances(): Promise<void> {
  const left = [...running];
  for (const c of left) c.kill('SIGKILL');
  await Promise.all(left.map((c) => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(undefined) : c.once('close', r)))));
}
