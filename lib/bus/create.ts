/**
 * The one place that picks the bus adapter. kafkajs is the only one today; a second
 * client is a second adapter file implementing `EventBus` and a choice made here.
 */
import type { Logger } from '../logger.js';
import type { Registry } from '../metrics.js';
import type { AvroCodec } from '../../schemas/codec.js';
import type { BusConfig, EventBus } from './bus.js';
import { KafkajsBus } from './kafkajs.js';

/** `registry`: where the bus's own metrics go (the consumer watchdog's); a private one when omitted. */
export function createBus(config: BusConfig, codec: AvroCodec, logger: Logger, registry?: Registry): EventBus {
  return new KafkajsBus(config, codec, logger, registry);
}
