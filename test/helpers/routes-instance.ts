/**
 * One route processor instance as a process of its own, for test/routes-scaleout.test.ts:
 *   node --import tsx test/helpers/routes-instance.ts
 * Configured by the logmeter environment (LOGMETER_TOPIC_PREFIX, LOGMETER_KAFKA_SESSION_TIMEOUT_SECONDS,
 * LOGMETER_DATA_DIR: its state dir is `<dataDir>/routes`) and:
 *   ROUTES_NODE               node name written into its sets (tells the instances apart)
 *   ROUTES_LABEL_PREFIX       the label prefix of the workload
 * Prints one JSON object per line on stdout: `{"ready":…}` once started, `{"owned":…}` at
 * every change of what it publishes, `{"stopping":true}` at SIGTERM and `{"stopped":true}`
 * once the processor stopped (then it exits 0). No HAProxy: the publish path only.
 */
import { loadConfig } from '../../app/config.js';
import { busConfig } from '../../lib/bus/bus.js';
import { createBus } from '../../lib/bus/create.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry } from '../../lib/metrics.js';
import { dataPath } from '../../lib/config.js';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';
import { startRouteProcessor } from '../../processors/routes/processor.js';

const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

const config = loadConfig({ env: process.env });
const logger = createLogger(config.log.level, 2);
const codec = await AvroCodec.create(new ManifestSource());
const bus = createBus(busConfig(config), codec, logger);
const processor = await startRouteProcessor({
  bus,
  logger,
  registry: createRegistry(false),
  node: process.env.ROUTES_NODE ?? config.node,
  stateDir: dataPath(config, 'routes'),
  config: { ...config.routes, labelPrefix: process.env.ROUTES_LABEL_PREFIX ?? config.labelPrefix },
});
say({ ready: true, instance: processor.instance, pid: process.pid });

let last = '';
const watch = setInterval(() => {
  const v = processor.ownership();
  const now = JSON.stringify({ owned: v.owned, reading: v.reading, rebalancing: v.rebalancing });
  if (now !== last) process.stdout.write(`${now}\n`);
  last = now;
}, 50);

process.once('SIGTERM', () => {
  clearInterval(watch);
  say({ stopping: true });
  void processor
    .stop()
    .then(() => bus.close())
    .then(() => {
      say({ stopped: true });
      process.exit(0);
    })
    .catch((err: unknown) => {
      process.stderr.write(`stop failed: ${String(err)}\n`);
      process.exit(1);
    });
});
