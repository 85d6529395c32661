import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { busFor, schemaSource } from '../../lib/runtime.js';
import type { AppRuntime } from '../../app/runtime.js';
import { AvroCodec } from '../../schemas/codec.js';
import { createRegistry } from '../../lib/metrics.js';
import { createLogger } from '../../lib/logger.js';
import { clickHouseOn, clickHouseOptions, openClickHouse, type ClickHouse } from '../../lib/clickhouse/client.js';
import { migrate } from '../../lib/clickhouse/migrate.js';
import { startProcessors, stopAll, type Running } from '../../app/pipeline.js';
import { registerTenantRoutes } from '../../api/index.js';
import { registerSqlRoute } from '../../api/admin-sql.js';
import { allGood, cleanupScenario, collectorChild, report, scenario, settle, sleep, stamp, startWorkload, useServices, type Query, type Sql } from './harness.js';

const services = useServices();
const OUTAGE_MS = 30_000;

test('embedded ClickHouse closed for 30 s under the real sink: no offset committed during the outage, nothing lost or shown twice after, usage exact', async () => {
  const sc = await scenario('clickhouse-closed', services());
  const { config } = sc;
  // The in-process processors log to a file: its retry lines are the outage's evidence.
  const logFile = path.join(sc.dir, 'processors.log');
  const logger = createLogger('warn', logFile);
  const codec = await AvroCodec.create(schemaSource(config));
  const bus = busFor(config, codec, logger);
  await bus.ensureTopics();
  // The processors' store behind a handle the test can close and open again, as test/processors.test.ts does:
  // a logmeter process offers no way to close its embedded store from outside, so the sink runs in this process.
  let current: ClickHouse = openClickHouse(clickHouseOptions(config, logger));
  const ch: ClickHouse = clickHouseOn(() => current.client, 'embedded', config.clickhouse.database, () => current.close());
  await migrate(ch, logger);
  const rt = { config, logger, registry: createRegistry(false), bus, codec, clickhouse: ch } as unknown as AppRuntime;
  let running: Running[] = [];
  const app = Fastify();
  registerTenantRoutes(app, { ch, tokens: config.api.tokens, adminToken: config.api.adminToken, logger });
  registerSqlRoute(app, ch, config.api.adminToken);
  const api: Query = async (tenant, url) => {
    const r = await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${sc.tokens[tenant]}` } });
    if (r.statusCode !== 200) throw new Error(`GET ${url}: ${r.statusCode} ${r.body}`);
    return r.json();
  };
  const sql: Sql = async (query) => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/admin/sql', headers: { authorization: `Bearer ${sc.adminToken}` }, payload: { query } });
    if (r.statusCode !== 200) throw new Error(`sql: ${r.statusCode} ${r.body}`);
    return r.body
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  const groups = ['logs', 'lifecycle', 'http', 'usage'].map((t) => ({ group: `${config.kafka.topicPrefix}log-sink.${t}`, topic: bus.topic(t as 'logs') }));
  const committed = async () => {
    const out: Record<string, number> = {};
    for (const g of groups) {
      const parts = await bus.committedOffsets(g.group, g.topic);
      out[g.topic] = parts.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
    }
    return out;
  };
  const collector = collectorChild(sc);
  const events: string[] = [];
  const at = stamp(sc);
  try {
    running = await startProcessors(rt, ['log-sink', 'access-log', 'traffic', 'usage']);
    events.push(at('sink, access-log, traffic and usage running in the test process'));
    events.push(at(`collector up in ${await collector.start()} ms`));
    const wl = await startWorkload(sc, { containersPerTenant: 2, lines: 3000, seconds: 45 });
    events.push(at('workload started: 2 tenants × 2 containers × 3000 lines'));
    await sleep(8000);
    await current.close();
    events.push(at('embedded store closed'));
    // An insert that finished just before the close may still commit its offsets: give it a moment, then watch.
    await sleep(3000);
    const atStart = await committed();
    await sleep(OUTAGE_MS - 3000);
    const atEnd = await committed();
    events.push(at(`store closed for ${OUTAGE_MS / 1000} s; committed offsets ${JSON.stringify(atStart)} → ${JSON.stringify(atEnd)}`));
    current = openClickHouse(clickHouseOptions(config, logger));
    events.push(at('embedded store opened again'));
    await wl.done();
    events.push(at('workload finished'));
    const counts = await settle(sc, wl, { api, sql });
    events.push(at(`counts settled after ${Math.round(counts.settleMs / 1000)} s`));
    const after = await committed();
    const log = readFileSync(logFile, 'utf8');
    const insertRetries = (log.match(/clickhouse_insert_failed|insert into .*closed/g) ?? []).length;
    const handlerRetries = (log.match(/failed; retrying/g) ?? []).length;
    report({ fault: 'ClickHouse (embedded) closed 30 s', counts, events, durationMs: Date.now() - sc.startedAt, extra: { handlerRetries, insertRetries, committedDuringOutage: atStart, committedAtOutageEnd: atEnd, committedAfter: after } });
    assert.deepEqual(atEnd, atStart, 'no offset committed while the store was closed');
    assert.ok(after[bus.topic('logs')]! > atEnd[bus.topic('logs')]!, 'commits resumed after the outage');
    assert.ok(allGood(counts, wl), 'lost 0, duplicated 0, usage equal to the expected figures');
  } finally {
    await collector.stop().catch(() => undefined);
    await stopAll(running);
    await app.close();
    await bus.close();
    await current.close().catch(() => undefined);
    await cleanupScenario(sc);
  }
});
