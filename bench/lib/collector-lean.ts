/**
 * The collector with only the modules it uses: what `logmeter collector` does (config,
 * pino, metrics and /metrics over the same HTTP server, codec, bus, createCollector),
 * but without importing lib/runtime.ts and the CLI's other commands, which load chDB
 * (lib/clickhouse/client.ts imports `chdb/connection`: a 540 MB shared library),
 * bullmq, the API and the processors. bench/memory.ts runs it next to the real command
 * to show what those imports cost in RSS. Not a product entry point.
 */
import { collectorFromConfig } from '../../app/collector.js';
import { loadConfig } from '../../app/config.js';
import { createLogger } from '../../lib/logger.js';
import { createRegistry } from '../../lib/metrics.js';
import { createHttpServer } from '../../lib/http.js';
import { busConfig } from '../../lib/bus/bus.js';
import { createBus } from '../../lib/bus/create.js';
import { AvroCodec } from '../../schemas/codec.js';
import { ManifestSource } from '../../schemas/registry.js';

const config = loadConfig();
const logger = createLogger(config.log.level);
const registry = createRegistry();
const codec = await AvroCodec.create(new ManifestSource());
const bus = createBus(busConfig(config), codec, logger);
await bus.ensureTopics();
const http = createHttpServer({ listen: config.http.listen, registry, logger: logger.child({ component: 'http' }) });
const collector = collectorFromConfig(config, { bus, codec, logger, registry });
await collector.start();
await http.listen();
process.once('SIGTERM', () => {
  void (async () => {
    await collector.stop();
    await http.close();
    await bus.close();
    process.exit(0);
  })();
});
