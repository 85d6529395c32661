import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { heapFlags } from '../lib/heap-limits.js';
import { loadConfig } from '../app/config.js';
import { ConfigError } from '../lib/errors.js';
import { ROOT, cliBackground, namespace } from './helpers/env.js';

test('heapFlags: the V8 flags follow the setting; 0 is none; a bad value is refused', () => {
  assert.deepEqual(heapFlags({ heapGrowingPercent: 30 }), ['--heap-growing-percent=30']);
  assert.deepEqual(heapFlags({ heapGrowingPercent: 7 }), ['--heap-growing-percent=7']);
  assert.deepEqual(heapFlags({ heapGrowingPercent: 0 }), []);
  assert.throws(() => heapFlags({ heapGrowingPercent: -1 }), /heapGrowingPercent/);
  assert.throws(() => heapFlags({ heapGrowingPercent: 2.5 }), /heapGrowingPercent/);
});

test('the collector heap setting: default 30, LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT sets it, a negative value is a config error', () => {
  assert.equal(loadConfig({ env: {} }).collector.heapGrowingPercent, 30);
  assert.equal(loadConfig({ env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: '45' } }).collector.heapGrowingPercent, 45);
  assert.equal(loadConfig({ env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: '0' } }).collector.heapGrowingPercent, 0);
  assert.throws(() => loadConfig({ env: { LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: '-5' } }), (err: unknown) => err instanceof ConfigError && /LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT/.test(err.message));
});

test('set after start-up, the heap growing flag is in force: the same allocations take more major GCs', () => {
  const probe = (percent: number) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/helpers/heap-probe.ts'), String(percent)], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { flags: string[]; major: number; retained: number };
  };
  const off = probe(0);
  const on = probe(5);
  assert.deepEqual(off.flags, []);
  assert.deepEqual(on.flags, ['--heap-growing-percent=5']);
  assert.equal(on.retained, 1_500_000);
  assert.ok(on.major > off.major, `major GCs with --heap-growing-percent=5: ${on.major}, with V8's defaults: ${off.major}`);
});

test('`logmeter collector` applies its heap setting at start (and none when it is 0)', async () => {
  for (const [value, expected] of [['25', /"msg":"heap settings: --heap-growing-percent=25"/], ['0', /"msg":"heap settings: V8 defaults"/]] as const) {
    // A label prefix of its own: the collector follows no other test's containers.
    const ns = namespace({ LOGMETER_LOG_LEVEL: 'info', LOGMETER_LABEL_PREFIX: `heap${randomBytes(4).toString('hex')}.`, LOGMETER_COLLECTOR_HEAP_GROWING_PERCENT: value });
    const p = cliBackground(['collector'], ns.env);
    try {
      await p.waitFor(/"msg":"collector up"/, 120_000);
      assert.match(p.output(), expected);
      assert.equal((p.output().match(/"msg":"heap settings/g) ?? []).length, 1);
    } finally {
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0, p.output());
      ns.cleanup();
    }
  }
});
