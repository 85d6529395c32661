import { logLevel, type logCreator } from 'kafkajs';
import type { Logger } from '../logger.js';

/** A kafkajs logCreator writing through `logger` (kafkajs' own level is mapped to pino's). */
export function kafkaLogCreator(logger: Logger): logCreator {
  return () =>
    ({ level, log }) => {
      const { message, timestamp: _timestamp, logger: source, ...extra } = log as { message: string; timestamp?: unknown; logger?: unknown; [k: string]: unknown };
      const fields = { kafka: source, ...extra };
      switch (level) {
        case logLevel.ERROR:
        case logLevel.NOTHING:
          logger.error(fields, message);
          break;
        case logLevel.WARN:
          logger.warn(fields, message);
          break;
        case logLevel.INFO:
          logger.info(fields, message);
          break;
        default:
          logger.debug(fields, message);
      }
    };
}

/** kafkajs level matching a pino level, so kafkajs does not format lines pino would drop. */
export function kafkaLevel(logger: Logger): logLevel {
  switch (logger.level) {
    case 'trace':
    case 'debug':
      return logLevel.DEBUG;
    case 'info':
      return logLevel.INFO;
    case 'warn':
      return logLevel.WARN;
    case 'silent':
      return logLevel.NOTHING;
    default:
      return logLevel.ERROR;
  }
}
