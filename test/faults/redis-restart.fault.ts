import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { periodBounds, type PeriodKind } from '../../processors/billing/calendar.js';
import { KEEP_COMPLETED_SECONDS, KEEP_FAILED_SECONDS, REPORT_ATTEMPTS, REPORT_BACKOFF_MS, reportJobId, type ReportJobData, type ReportJobResult } from '../../processors/billing/scheduler.js';
import { killRedis } from './services.js';
import { TENANTS, allGood, cleanupScenario, httpReaders, report, settle, sleep, startPipeline, startWorkload, useServices } from './harness.js';

const services = useServices();
const HOUR = 3_600_000;

test('Redis killed (SIGKILL) and restarted while billing report jobs are queued: every job runs once, reports byte-identical to an undisturbed run', async () => {
  const svc = services();
  const p = await startPipeline('redis-restart', svc);
  const { sc, processors, events, note } = p;
  const client = new Redis(svc.redis, { maxRetriesPerRequest: null });
  const queue = new Queue<ReportJobData>(`${sc.config.kafka.topicPrefix}billing`, { connection: client });
  queue.on('error', () => undefined);
  try {
    // Usage to bill: a short undisturbed workload, settled (usage final) before any report runs.
    const wl = await startWorkload(sc, { containersPerTenant: 1, lines: 1000, seconds: 5 });
    await wl.done();
    const counts = await settle(sc, wl, httpReaders(sc));
    note(`usage settled after ${Math.round(counts.settleMs / 1000)} s`);
    assert.ok(allGood(counts, wl), 'the usage to bill is complete and exact');

    // The jobs a tick would enqueue (same ids and options): each tenant's hourly reports of the last 24 hours and today's daily one.
    const now = Date.now();
    const periods: Array<{ kind: PeriodKind; at: Date }> = [{ kind: 'daily', at: new Date(now) }];
    for (let h = 0; h < 24; h++) periods.push({ kind: 'hourly', at: new Date(now - h * HOUR) });
    const jobs = TENANTS.flatMap((tenant) =>
      periods.map(({ kind, at: when }) => {
        const period = periodBounds(kind, when);
        return {
          name: 'report',
          data: { tenant, kind, start: period.start.toISOString(), end: period.end.toISOString() },
          opts: { jobId: reportJobId(tenant, period), attempts: REPORT_ATTEMPTS, backoff: { type: 'exponential', delay: REPORT_BACKOFF_MS }, removeOnComplete: { age: KEEP_COMPLETED_SECONDS }, removeOnFail: { age: KEEP_FAILED_SECONDS } },
          label: `${tenant}/${period.label}`,
        };
      }),
    );
    await queue.addBulk(jobs.map(({ label: _label, ...j }) => j));
    note(`${jobs.length} report jobs enqueued`);
    // Killed with jobs in flight: some done, one being worked on, the rest waiting.
    for (;;) {
      const c = await queue.getJobCounts('completed', 'active');
      if ((c.completed ?? 0) >= 3 && (c.active ?? 0) >= 1) break;
      await sleep(20);
    }
    const before = await queue.getJobCounts('completed', 'waiting', 'active', 'delayed', 'failed');
    const pid = await killRedis(svc);
    note(`Redis (pid ${pid}) SIGKILL with jobs ${JSON.stringify(before)}`);
    await sleep(5000);
    const t0 = Date.now();
    await svc.redisService.up(svc.ctx);
    note(`Redis started again in ${Date.now() - t0} ms (append-only file)`);

    const ids = jobs.map((j) => j.opts.jobId);
    const end = Date.now() + 240_000;
    let states: string[] = [];
    while (Date.now() < end) {
      states = await Promise.all(ids.map((id) => queue.getJobState(id).catch(() => 'unknown')));
      if (states.every((s) => s === 'completed' || s === 'failed')) break;
      await sleep(1000);
    }
    note(`jobs after the restart: ${JSON.stringify(await queue.getJobCounts('completed', 'waiting', 'active', 'delayed', 'failed'))}`);

    // Runs per report: the worker logs one line per report written.
    const runs = new Map<string, number>();
    for (const line of processors.output().split('\n')) {
      if (!line.includes('"msg":"billing report written"')) continue;
      const id = (JSON.parse(line) as { report_id: string }).report_id;
      runs.set(id, (runs.get(id) ?? 0) + 1);
    }
    // The undisturbed run: the same reports computed again through the running process (`logmeter report`'s path).
    let identical = 0;
    const different: string[] = [];
    for (const j of jobs) {
      const job = await queue.getJob(j.opts.jobId);
      const result = job?.returnvalue as ReportJobResult | undefined;
      if (!result) continue;
      const files = { csv: readFileSync(result.files.csv, 'utf8'), json: readFileSync(result.files.json, 'utf8') };
      const period = j.label.split('/')[1]!;
      let same = true;
      for (const format of ['csv', 'json'] as const) {
        const res = await fetch(`http://${sc.processorsHttp}/api/v1/admin/report`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${sc.adminToken}` },
          body: JSON.stringify({ tenant: j.data.tenant, period, format }),
        });
        const body = (await res.json()) as { text: string };
        if (body.text !== files[format]) same = false;
      }
      if (same) identical++;
      else different.push(j.label);
    }
    const ranOnce = jobs.filter((j) => runs.get(j.label) === 1).length;
    const ranTwice = jobs.filter((j) => (runs.get(j.label) ?? 0) > 1).map((j) => `${j.label} ×${runs.get(j.label)}`);
    report({
      fault: 'Redis SIGKILL with billing jobs queued',
      counts,
      events,
      durationMs: Date.now() - sc.startedAt,
      extra: { jobs: jobs.length, completed: states.filter((s) => s === 'completed').length, ranOnce, ranMoreThanOnce: ranTwice, neverRan: jobs.filter((j) => !runs.has(j.label)).length, byteIdentical: identical, different },
    });
    // The fault bit: jobs were still to run when Redis died.
    assert.ok((before.active ?? 0) + (before.waiting ?? 0) >= 1, `jobs unfinished at the kill: ${JSON.stringify(before)}`);
    assert.deepEqual(states.filter((s) => s !== 'completed'), [], 'every job completed');
    assert.deepEqual(ranTwice, [], 'no report job ran twice');
    assert.equal(ranOnce, jobs.length, 'every report job ran exactly once');
    assert.deepEqual(different, [], 'reports byte-identical to an undisturbed computation');
    assert.equal(identical, jobs.length);
  } finally {
    await queue.close().catch(() => undefined);
    client.disconnect();
    await cleanupScenario(sc, p.collector, processors);
  }
});
