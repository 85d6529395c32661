/**
 * `logmeter up [--demo]`: the whole pipeline in one process, until SIGINT/SIGTERM. The
 * routes lane (route processor, HAProxy, applier) and the collector (`collector.thread`,
 * default true) run on threads of their own (app/thread-host.ts), each restarted if it
 * dies; everything else on the main thread.
 */
import type { Command } from 'commander';
import { type Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { ensureAdminToken } from '../lib/admin-token.js';
import { startProcess } from '../app/runtime.js';
import { dockerClient } from '../lib/docker.js';
import { DEMO_NETWORKS, demoTokens, startDemo, stopDemo } from '../app/demo.js';
import { errorMessage } from '../lib/errors.js';
import { startCollector, type CollectorLane } from '../app/collector-lane.js';
import { runUntilSignal } from './signals.js';
import { PROCESSORS, startProcessors, stopAll, type Running } from '../app/pipeline.js';

export function upCommand(program: Command, config: () => Config): void {
  program
    .command('up')
    .description('run the pipeline in one process (Ctrl-C / SIGTERM stops it cleanly)')
    .option('--demo', 'also start a small demo workload of tenant containers')
    .action(async (opts: { demo?: boolean }) => {
      const configured = config();
      const logger = createLogger(configured.log.level);
      const loaded = ensureAdminToken(configured, logger);
      // The demo's networks are classed like a platform's: one internal (free), one external (billed).
      // On a small machine the demo scales each app to at most 3 replicas.
      const demo = opts.demo ? demoTokens(loaded.api.tokens) : undefined;
      const cfg = demo
        ? {
            ...loaded,
            api: { ...loaded.api, tokens: demo.tokens },
            collector: { ...loaded.collector, internalNetworks: [...loaded.collector.internalNetworks, DEMO_NETWORKS.internal], externalNetworks: [...loaded.collector.externalNetworks, DEMO_NETWORKS.external] },
            autoscale: { ...loaded.autoscale, policy: { ...loaded.autoscale.policy, maxReplicas: Math.min(loaded.autoscale.policy.maxReplicas, 3) } },
          }
        : loaded;
      const log = logger.child({ component: 'up' });
      const rt = await startProcess(cfg, { clickhouse: true, collector: { maxLineBytes: cfg.collector.maxLineBytes }, services: ['redis'], logger });
      const docker = dockerClient(cfg.docker.host);
      let collector: CollectorLane | undefined;
      let summary: NodeJS.Timeout | undefined;
      let processors: Running[] = [];
      await runUntilSignal(
        logger,
        async () => {
          // The routes lane on a thread of its own: a new container's route never waits behind log traffic (issue 15).
          processors = await startProcessors(rt, PROCESSORS, { threads: ['routes'] });
          // On a thread of its own unless `collector.thread` is false: its reads and sends never wait behind the sink's, parsers' or API's work (issue 13).
          collector = await startCollector(rt);
          if (opts.demo) await startDemo(docker, log, cfg.labelPrefix);
          const addr = await rt.http.listen();
          log.info({ http: addr, clickhouse: rt.clickhouse?.mode, topics: cfg.kafka.topicPrefix, demo: !!opts.demo }, 'logmeter up');
          // Demo tokens only: synthetic tenants, new at every start, so a new user can open the panel.
          for (const t of demo?.created ?? []) log.info({ panel: `${addr}/`, tenant: t }, `demo: sign in to ${addr}/ as tenant ${t} with the token ${demo!.tokens[t]}`);
          summary = setInterval(() => {
            void collector?.summary().then(async (s) => {
              if (s) log.info({ summary: s }, `collector: ${s.containers} containers, ${s.linesProduced} lines to Kafka, ${s.linesDropped} dropped`);
              else log.info({ thread: collector?.thread?.state() }, `collector: no summary (its thread is ${collector?.thread?.state() ?? 'gone'} or did not answer in time)`);
              for (const p of processors) if (p.summary) log.info({ processor: p.name }, await p.summary());
            });
          }, 10_000);
          summary.unref();
        },
        async ({ step }) => {
          if (summary) clearInterval(summary);
          // The processors (the scaler before the others, see stopAll) at the same time as
          // the collector, which flushes what it read to Kafka and checkpoints what was
          // acknowledged; the demo goes once the scaler and the collector are done (no
          // replica started meanwhile, no log stream cut); the runtime (API included) last.
          const scalerDone = processors.some((p) => p.name === 'scaler') ? step('processor:scaler', () => processors.find((p) => p.name === 'scaler')!.stop()) : Promise.resolve();
          // A scaler that failed to stop does not keep the others running.
          const rest = scalerDone.catch(() => undefined).then(() => stopAll(processors.filter((p) => p.name !== 'scaler'), step));
          const collected = step('collector', () => collector?.stop() ?? Promise.resolve());
          const demo = opts.demo
            ? Promise.allSettled([scalerDone, collected]).then(() => step('demo containers', () => stopDemo(docker, log, cfg.labelPrefix)).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'demo cleanup failed')))
            : Promise.resolve();
          const results = await Promise.allSettled([scalerDone, rest, collected, demo]);
          await step('runtime (Kafka producer, ClickHouse, Redis)', () => rt.close());
          const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (failed) throw failed.reason;
        },
      );
    });
}
