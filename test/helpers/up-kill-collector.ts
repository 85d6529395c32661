/**
 * `logmeter <args>` (the real CLI, cli/main.ts) in this process, for tests that need a
 * hand inside it: SIGUSR2 kills the collector's thread (`ThreadHost.kill()`, as a crash)
 * of a running `logmeter up`. Run as `node --import tsx test/helpers/up-kill-collector.ts up`.
 */
import { collectorThread } from '../../app/collector-lane.js';

process.on('SIGUSR2', () => void collectorThread()?.kill());
await import('../../cli/main.js');
