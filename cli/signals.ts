/**
 * Runs a long-lived command until SIGINT/SIGTERM, then stops it cleanly and exits 0.
 * A second signal while stopping exits at once (status 130).
 */
import type { Logger } from '../lib/logger.js';

export async function runUntilSignal(logger: Logger, start: () => Promise<void>, stop: () => Promise<void>): Promise<void> {
  const log = logger.child({ component: 'process' });
  let stopping: Promise<void> | undefined;
  const shutdown = (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = (async () => {
      log.info({ signal }, 'stopping');
      try {
        await stop();
        log.info('stopped');
      } catch (err) {
        log.error({ err }, 'error while stopping');
        process.exitCode = 1;
      }
      logger.flush();
    })();
    void stopping.then(() => process.exit());
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  try {
    await start();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  await new Promise<void>(() => undefined);
}
