/**
 * Stopping a long-lived command (cli/signals.ts, issue 18): a stop says each second what
 * it still waits for and each step when it is done; a second signal exits at once, even
 * while a step hangs. (`logmeter up --demo` stopped by SIGTERM: test/cli.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { namespace } from './helpers/env.js';
import { script } from './helpers/api.js';

/** A command whose stop has a step taking `slowMs` (0: forever) next to a quick one. */
function command(slowMs: number) {
  return `
    import { createLogger } from './lib/logger.ts';
    import { runUntilSignal } from './cli/signals.ts';
    const logger = createLogger('info');
    await runUntilSignal(
      logger,
      async () => {
        // What keeps a real command alive (its servers and consumers).
        setInterval(() => undefined, 3_600_000);
        logger.info('command up');
      },
      async ({ step }) => {
        const slow = step('slow part', () => new Promise((r) => ${slowMs > 0 ? `setTimeout(r, ${slowMs})` : 'setInterval(() => undefined, 60_000)'}));
        await step('quick part', () => Promise.resolve());
        await slow;
      },
    );
  `;
}

interface Line {
  msg: string;
  waiting?: string[];
  step?: string;
}

const lines = (out: string): Line[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Line);

async function started(run: ReturnType<typeof script>): Promise<void> {
  const end = Date.now() + 60_000;
  while (!run.output().includes('"msg":"command up"')) {
    if (run.child.exitCode !== null || Date.now() > end) throw new Error(`not started:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a stop logs each second which steps it still waits for, and each step when done', async () => {
  const ns = namespace();
  const run = script(command(2600), ns.env);
  try {
    await started(run);
    run.child.kill('SIGTERM');
    assert.equal(await run.exited, 0, run.output());
    const got = lines(run.output());
    const msgs = got.map((l) => l.msg).filter((m) => m !== 'command up');
    // Two whole seconds pass while the slow step runs (the process cannot exit before it is done).
    assert.deepEqual(msgs, ['stopping (a second signal exits at once)', 'stopped quick part', 'stopping: waiting for slow part', 'stopping: waiting for slow part', 'stopped slow part', 'stopped']);
    assert.deepEqual(got.filter((l) => l.waiting).map((l) => l.waiting), [['slow part'], ['slow part']]);
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    ns.cleanup();
  }
});

test('a second signal exits at once (130) while a stop step hangs, saying what it left waiting', async () => {
  const ns = namespace();
  const run = script(command(0), ns.env);
  try {
    await started(run);
    run.child.kill('SIGINT');
    const end = Date.now() + 60_000;
    while (!run.output().includes('stopped quick part')) {
      if (Date.now() > end) throw new Error(`stop did not begin:\n${run.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    run.child.kill('SIGINT');
    // Without the second signal this process never exits (its slow step never ends).
    assert.equal(await run.exited, 130, run.output());
    const second = lines(run.output()).find((l) => l.msg.startsWith('second signal'));
    assert.deepEqual(second?.waiting, ['slow part'], run.output());
  } finally {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
    ns.cleanup();
  }
});
