/**
 * `logmeter <args>` (the real CLI, cli/main.ts) in this process, for tests that need a
 * hand inside it: SIGUSR2 kills the collector's thread (`ThreadHost.kill()`, as a crash)
 * of a running `logmeter up`. Run as `node --import tsx test/helpers/up-kill-collector.ts up`.
 */
import { threads } from '../../app/thread-host.js';

process.on('SIGUSR2', () => void threads().find((t) => t.name === 'collector')?.kill());
await import('../../cli/main.js');
