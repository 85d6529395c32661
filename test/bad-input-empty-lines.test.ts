/**
 * A million empty lines, through the whole path: Docker → collector → Kafka → log sink →
 * ClickHouse. Each is a line (zero bytes, not truncated, clean), each gets its own event
 * id, and the counts are exact at every step. Timings are printed, not asserted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRegistry } from '../lib/metrics.js';
import type { Subscription } from '../lib/bus/bus.js';
import { BASE_IMAGE } from '../lib/docker.js';
import { startLogSink } from '../processors/log-sink/processor.js';
import { logSinkConfig } from '../app/pipeline.js';
import { eventually } from './helpers/env.js';
import { docker } from './helpers/docker.js';
import { note, pipeline, type Pipeline } from './helpers/bad-input.js';

const LINES = 1_000_000;
let p: Pipeline;
before(async () => {
  p = await pipeline();
});
after(() => p.close());

test(`${LINES.toLocaleString('en')} empty lines: exactly that many events on Kafka and rows in ClickHouse, each its own`, async () => {
  // The per-tenant rate limit is a policy, not a loss: lifted here so every line must arrive.
  const collector = p.collector('collector', { rateLimit: { linesPerSecond: 1e9, bytesPerSecond: 1e12, burstSeconds: 2, tenants: {} } });
  await collector.start();

  // Counted as they come, not kept (a million decoded events would be ~200 MB).
  const seen = { empty: 0, other: [] as string[], bad: 0 };
  let containerId = '';
  const reader = await p.bus.subscribe({
    group: `count-${Date.now()}`,
    topics: ['logs'],
    handle: async (batch) => {
      for (const { event: e } of batch) {
        if (e.container_id !== containerId) continue;
        if (e.line.length === 0) {
          seen.empty++;
          if (e.truncated || e.invalid_utf8 || e.original_length !== 0) seen.bad++;
        } else seen.other.push(e.line.toString());
      }
    },
  });
  let sink: Subscription | undefined;
  const t0 = Date.now();
  try {
    const c = await docker.createContainer({
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', `yes '' | head -n ${LINES}; echo end`],
      Labels: { 'logmeter.test': 'true', [`${p.prefix}tenant`]: 'acme', [`${p.prefix}app`]: 'empty' },
      // The local driver, with room for the whole run (its default rotates at 20 MB × 5).
      HostConfig: { Init: true, LogConfig: { Type: 'local', Config: { 'max-size': '500m', 'max-file': '2' } } },
    });
    containerId = c.id;
    await c.start();
    await c.wait();
    const printed = Date.now();
    await eventually('every line on Kafka', async () => (seen.empty + seen.other.length >= LINES + 1 ? true : undefined), 900_000);
    const onKafka = Date.now();
    // A little longer: a duplicate would show up now.
    await new Promise((r) => setTimeout(r, 2000));
    const summary = await collector.summary();
    note(`${LINES} empty lines: printed in ${printed - t0} ms; all on Kafka after ${onKafka - t0} ms; collector: ${summary.linesProduced} lines produced, ${summary.linesDropped} dropped`);
    assert.equal(seen.empty, LINES, 'every empty line, once');
    assert.deepEqual(seen.other, ['end']);
    assert.equal(seen.bad, 0, 'zero bytes, not truncated, clean');
    assert.equal(summary.linesProduced, LINES + 1);
    assert.equal(summary.linesDropped, 0);

    const s0 = Date.now();
    sink = await startLogSink({ config: logSinkConfig(p.config), bus: p.bus, ch: p.ch, logger: p.ns.logger, registry: createRegistry(false) });
    const row = await eventually(
      'every row in ClickHouse',
      async () => {
        const rs = await p.ch.client.query({
          query: `SELECT count() AS n, uniqExact(event_id) AS ids, countIf(line = '') AS empty, countIf(truncated OR invalid_utf8 OR original_length != length(line)) AS odd, sum(length(line)) AS bytes FROM ${p.ch.table('logs')} FINAL WHERE container_id = {id:String}`,
          query_params: { id: c.id },
          format: 'JSONEachRow',
        });
        const [r] = await rs.json<{ n: string; ids: string; empty: string; odd: string; bytes: string }>();
        return r && Number(r.n) >= LINES + 1 ? r : undefined;
      },
      900_000,
    );
    note(`${LINES} empty lines: all ${row.n} rows in ClickHouse ${Date.now() - s0} ms after the sink started`);
    assert.deepEqual([row.n, row.ids, row.empty, row.odd, row.bytes].map(Number), [LINES + 1, LINES + 1, LINES, 0, 3]);
  } finally {
    await reader.stop();
    await sink?.stop();
    await collector.stop();
  }
});
