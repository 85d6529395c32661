/**
 * `logmeter up [--demo]`: the whole pipeline in one process, until SIGINT/SIGTERM.
 */
import type { Command } from 'commander';
import { dataPath } from '../lib/config.js';
import { type Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { ensureAdminToken } from '../lib/admin-token.js';
import { startProcess } from '../app/runtime.js';
import { dockerClient } from '../lib/docker.js';
import { DEMO_NETWORKS, startDemo, stopDemo } from '../app/demo.js';
import { errorMessage } from '../lib/errors.js';
import { createCollector } from '../ingest/collector.js';
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
      const cfg = opts.demo
        ? {
            ...loaded,
            collector: { ...loaded.collector, internalNetworks: [...loaded.collector.internalNetworks, DEMO_NETWORKS.internal], externalNetworks: [...loaded.collector.externalNetworks, DEMO_NETWORKS.external] },
            autoscale: { ...loaded.autoscale, policy: { ...loaded.autoscale.policy, maxReplicas: Math.min(loaded.autoscale.policy.maxReplicas, 3) } },
          }
        : loaded;
      const log = logger.child({ component: 'up' });
      const rt = await startProcess(cfg, { clickhouse: true, collector: { maxLineBytes: cfg.collector.maxLineBytes }, services: ['redis'], logger });
      const docker = dockerClient(cfg.docker.host);
      const collector = createCollector({
        cfg: cfg.collector,
        node: cfg.node,
        stateDir: dataPath(cfg, 'collector'),
        docker,
        bus: rt.bus,
        codec: rt.codec,
        logger,
        registry: rt.registry,
      });
      let summary: NodeJS.Timeout | undefined;
      let processors: Running[] = [];
      await runUntilSignal(
        logger,
        async () => {
          processors = await startProcessors(rt, PROCESSORS);
          await collector.start();
          rt.http.addHealthCheck('collector', () => collector.health());
          if (opts.demo) await startDemo(docker, log, cfg.labelPrefix);
          const addr = await rt.http.listen();
          log.info({ http: addr, clickhouse: rt.clickhouse?.mode, topics: cfg.kafka.topicPrefix, demo: !!opts.demo }, 'logmeter up');
          summary = setInterval(() => {
            void collector.summary().then((s) => {
              log.info({ summary: s }, `collector: ${s.containers} containers, ${s.linesProduced} lines to Kafka, ${s.linesDropped} dropped`);
              for (const p of processors) if (p.summary) log.info({ processor: p.name }, p.summary());
            });
          }, 10_000);
          summary.unref();
        },
        async () => {
          if (summary) clearInterval(summary);
          // Processors first (the scaler must not start replicas while the demo is removed).
          await stopAll(processors);
          await collector.stop();
          if (opts.demo) await stopDemo(docker, log).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'demo cleanup failed'));
          await rt.close();
        },
      );
    });
}
