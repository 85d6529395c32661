/**
 * The node collector built from the whole config: one place for what `logmeter collector`,
 * the collector thread of `logmeter up` (or the collector on up's main thread) and the lean
 * bench collector hand to createCollector.
 */
import { createCollector, type Collector } from '../ingest/collector.js';
import { dataPath } from '../lib/config.js';
import { dockerClient } from '../lib/docker.js';
import type { EventBus } from '../lib/bus/bus.js';
import type { AvroCodec } from '../schemas/codec.js';
import type { Logger } from '../lib/logger.js';
import type { Registry } from 'prom-client';
import type { Config } from './config.js';

export function collectorFromConfig(config: Config, deps: { bus: EventBus; codec: AvroCodec; logger: Logger; registry: Registry }): Collector {
  return createCollector({
    cfg: config.collector,
    node: config.node,
    stateDir: dataPath(config, 'collector'),
    docker: dockerClient(config.docker.host),
    ...deps,
  });
}
