/**
 * `logmeter collector`: the per-node collector alone (no ClickHouse).
 */
import { collectorFromConfig } from '../app/collector.js';
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { startProcess } from '../app/runtime.js';
import { healthDetail } from '../ingest/diagnosis.js';
import { applyHeapSettings } from '../lib/heap-limits.js';
import { runUntilSignal } from './signals.js';

export function collectorCommand(program: Command, config: () => Config): void {
  program
    .command('collector')
    .description('run the node collector: container logs, lifecycle and stats to Kafka')
    .action(async () => {
      const cfg = config();
      // Before anything big is allocated: this process's heap stays near its live size (issue 19).
      const heapFlags = applyHeapSettings({ heapGrowingPercent: cfg.collector.heapGrowingPercent });
      const logger = createLogger(cfg.log.level);
      logger.info({ v8Flags: heapFlags }, heapFlags.length > 0 ? `heap settings: ${heapFlags.join(' ')}` : 'heap settings: V8 defaults');
      const rt = await startProcess(cfg, { clickhouse: false, collector: { maxLineBytes: cfg.collector.maxLineBytes }, logger });
      const collector = collectorFromConfig(cfg, { bus: rt.bus, codec: rt.codec, logger, registry: rt.registry });
      await runUntilSignal(logger, async () => {
        await collector.start();
        rt.http.addHealthCheck('collector', () => collector.health());
        rt.http.addHealthDetail('collector', () => healthDetail(collector.diagnose()));
        const addr = await rt.http.listen();
        logger.info({ http: addr }, 'collector up');
      }, async () => {
        await collector.stop();
        await rt.close();
      });
    });
}
