/**
 * One instance of a processor in a process of its own, for bench/scale-out.ts: N of these
 * are members of one consumer group, so each one's CPU time (process.cpuUsage) is that
 * instance's alone, as on N machines or containers.
 *
 * Protocol over the IPC channel: the child loads its config, codec and bus and sends
 * `ready`; on `go` it starts the processor as `app/pipeline.ts` does (the access-log
 * parser with its routing, autoscale with the product defaults, an event-time clock fixed
 * at `clockMs` so the recorded requests stay in the windows however long the run takes)
 * and sends `started`; each `sample` is answered with its CPU time and what it handled so
 * far; `final` (autoscale) with its signals of every app it owns, once its windows are
 * rebuilt; on `stop` it stops the processor, closes the bus and exits.
 */
import { loadConfig } from '../../app/config.js';
import { busFor } from '../../lib/runtime.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry } from '../../lib/metrics.js';
import { errorMessage } from '../../lib/errors.js';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { startAccessLogParser } from '../../processors/access-log/processor.js';
import { startAutoscale, type AutoscaleProcessor } from '../../processors/autoscale/processor.js';

export type ScaledProcessor = 'access-log' | 'autoscale';

export interface ScaleOutChildParams {
  processor: ScaledProcessor;
  topicPrefix: string;
  /** This instance's node name (in its signals: which instance signalled an app). */
  node: string;
  /** The autoscale processor's event-time clock, fixed. */
  clockMs: number;
}

export type ScaleOutRequest = { type: 'go' } | { type: 'sample' } | { type: 'final' } | { type: 'stop' };

export interface ScaleOutSample {
  type: 'sample';
  /** User + system CPU of this process so far, µs. */
  cpuUs: number;
  /** Messages handled so far (access-log: lines parsed or not; autoscale: requests taken, replays included). */
  handled: number;
  /** Autoscale: the http partitions owned, and whether their windows are rebuilt and no rebalance is under way. */
  owned: number[];
  settled: boolean;
}

export type ScaleOutReply =
  | { type: 'ready' }
  | { type: 'started' }
  | ScaleOutSample
  | { type: 'final'; signals: { app: string; requests: number }[] }
  | { type: 'stopped' }
  | { type: 'error'; message: string };

const send = (m: ScaleOutReply) => new Promise<void>((r) => process.send!(m, () => r()));

async function main(): Promise<void> {
  const p = JSON.parse(process.env.BENCH_SCALE_OUT_CHILD ?? '') as ScaleOutChildParams;
  const config = loadConfig({ env: { ...process.env, LOGMETER_TOPIC_PREFIX: p.topicPrefix, LOGMETER_NODE: p.node, LOGMETER_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn' } });
  const logger = createLogger(config.log.level, 2);
  const codec = await AvroCodec.create(new ManifestSource());
  const bus = busFor(config, codec, logger);
  const registry = createRegistry(false);
  let autoscale: AutoscaleProcessor | undefined;
  let stop: () => Promise<void> = () => Promise.resolve();

  const accessHandled = async (): Promise<number> => {
    let n = 0;
    for (const name of ['logmeter_access_lines_parsed_total', 'logmeter_access_lines_unparsed_total']) {
      const metric = await registry.getSingleMetric(name)?.get();
      for (const v of metric?.values ?? []) n += v.value;
    }
    return n;
  };

  let clockNow = p.clockMs;
  const handlers: Record<ScaleOutRequest['type'], () => Promise<void>> = {
    go: async () => {
      if (p.processor === 'access-log') {
        const sub = await startAccessLogParser({ bus, logger, registry, routing: { lbApp: config.autoscale.lbApp, labelPrefix: config.labelPrefix } });
        stop = () => sub.stop();
      } else {
        const a = await startAutoscale({ bus, logger, registry, config: config.autoscale, node: p.node, labelPrefix: config.labelPrefix, clock: () => clockNow });
        autoscale = a;
        stop = () => a.stop();
      }
      await send({ type: 'started' });
    },
    sample: async () => {
      const cpu = process.cpuUsage();
      const o = autoscale?.ownership();
      await send({
        type: 'sample',
        cpuUs: cpu.user + cpu.system,
        handled: autoscale ? autoscale.seen().http : await accessHandled(),
        owned: o?.owned ?? [],
        settled: o ? !o.rebalancing && o.ready.length === o.owned.length : true,
      });
    },
    final: async () => {
      if (!autoscale) return send({ type: 'final', signals: [] });
      await autoscale.ready();
      // An instance signals only at a clock later than when it took its partitions (owner_since).
      clockNow = p.clockMs + 1;
      const signals = await autoscale.tick();
      await send({ type: 'final', signals: signals.map((s) => ({ app: `${s.tenant}/${s.app}`, requests: s.stable.requests })) });
    },
    stop: async () => {
      await stop();
      await bus.close();
      await send({ type: 'stopped' });
      process.exit(0);
    },
  };
  // Requests are handled one at a time, in order (a sample never overtakes the start).
  let turn = Promise.resolve();
  process.on('message', (m: ScaleOutRequest) => {
    turn = turn.then(handlers[m.type]).catch(async (err: unknown) => {
      await send({ type: 'error', message: errorMessage(err) });
      process.exit(1);
    });
  });
  // The benchmark went away (killed, interrupted): so does its instance.
  process.once('disconnect', () => process.exit(1));
  await send({ type: 'ready' });
}

main().catch(async (err: unknown) => {
  await send({ type: 'error', message: errorMessage(err) });
  process.exit(1);
});
