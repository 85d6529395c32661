/**
 * One autoscale instance as a child process (see instance.ts):
 * `node --import tsx test/helpers/autoscale-instance.ts <node> <clock ms>`. Built from the
 * config in its environment, with the clock the test sets (`clock`) and ticks the test
 * drives (`tick`, answering with the signals published); `ownership` answers its
 * partitions. SIGTERM stops it.
 */
import { startAutoscale } from '../../processors/autoscale/processor.js';
import { runInstance } from './instance.js';

const [node = 'autoscale', clockArg = ''] = process.argv.slice(2);
let now = Number(clockArg);
if (!Number.isFinite(now)) throw new Error(`usage: autoscale-instance.ts <node> <clock ms>, got clock ${clockArg}`);

await runInstance(async ({ config, bus, logger, registry }) => {
  const p = await startAutoscale({ bus, logger, registry, config: config.autoscale, clock: () => now, node, labelPrefix: config.labelPrefix, autoTick: false });
  return {
    stop: () => p.stop(),
    commands: {
      clock: (ms) => (now = Number(ms)),
      tick: () => p.tick(),
      ownership: () => p.ownership(),
    },
  };
});
