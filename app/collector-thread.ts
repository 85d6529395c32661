/**
 * The collector as a part on a thread of its own (app/thread-part.ts; the host side is
 * app/collector-lane.ts `startCollectorThread`), in `logmeter up`: Docker's events and
 * every container's logs and stats to Kafka, on a bus (Kafka producers), codec and
 * Docker client of the thread's own. Its event loop serves only the collector: a
 * lifecycle event or a log batch never waits behind the sink's inserts, the parsers,
 * autoscale or the API on the main thread (issue 13, issue 15).
 *
 * Its state (checkpoints, `collector-state.json`) is where `logmeter up` kept it, so a
 * thread started again after it died goes on from the last checkpoint: lines read but
 * not acknowledged by Kafka are read and sent again, with the same event ids.
 */
import { collectorFromConfig } from './collector.js';
import { busFor, schemaSource } from '../lib/runtime.js';
import { AvroCodec } from '../schemas/codec.js';
import { healthDetail } from '../ingest/diagnosis.js';
import type { Config } from './config.js';
import type { StartPart } from './thread-part.js';

export const start: StartPart<Config> = async ({ config, logger, registry }) => {
  const codec = await AvroCodec.create(schemaSource(config));
  const bus = busFor(config, codec, logger, registry);
  const collector = collectorFromConfig(config, { bus, codec, logger, registry });
  const stop = async () => {
    // Flushes what it read to Kafka and checkpoints what was acknowledged, then the producer goes.
    await collector.stop();
    await bus.close();
  };
  try {
    await collector.start();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return {
    stop,
    health: () => collector.health(),
    summary: () => collector.summary(),
    detail: () => healthDetail(collector.diagnose()),
  };
};
