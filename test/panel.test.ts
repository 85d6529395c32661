/**
 * The tenant panel in a real browser (playwright-core driving Debian's chromium) over the
 * API's fixture rows in embedded ClickHouse (test/helpers/api.ts): sign-in, isolation,
 * lines shown as text, the live tail, usage charts, bill downloads, CSRF, sign-out.
 * One browser for the file; the tests run in order and share its page.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, mkdir } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ADMIN, HOUR, TOKENS, apiFixture, cid, routeSetFixture, signalFixture, usageRow, type LogFixture } from './helpers/api.js';
import { createLogger } from '../lib/logger.js';
import { RouteSetStore } from '../processors/routes/store.js';
import { CONTENT_SECURITY_POLICY } from '../api/panel.js';

const { ch, server, insertLogs, call } = apiFixture();
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = process.env.PANEL_SCREENSHOTS; // a directory: save the views' screenshots there (docs/panel)

const XSS = '<img src=x onerror=alert(1)>';
const ANSI = '\u001b[31mred alert\u001b[0m and \u001b]0;title\u0007 done';
const now = Date.now();
const line = (id: string, tenant: string, app: string, ms: number, text: string): LogFixture => ({ id, tenant, app, container: `${app}-1`, ms, stream: 'stdout', kind: 'debug', line: text });
const RECENT: LogFixture[] = [
  line('p-xss', 'acme', 'web', now - 60_000, XSS),
  line('p-ansi', 'acme', 'web', now - 50_000, ANSI),
  line('p-acme', 'acme', 'web', now - 40_000, 'acme recent line'),
  // Another tenant's line in an app of the same name: never shown to acme.
  line('p-globex', 'globex', 'web', now - 30_000, 'GLOBEX-ONLY secret line'),
];

let browser: Browser;
let context: BrowserContext;
let page: Page;
const dialogs: string[] = [];
const cspViolations: string[] = [];

const base = () => server().address;
const shot = async (name: string) => {
  if (!SHOTS) return;
  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
};
const sessionCookie = async () => (await context.cookies()).find((c) => c.name === 'logmeter_session');
// What the browser-side callbacks touch, typed here: the test's own types have no DOM.
interface El {
  getAttribute(name: string): string | null;
  className: string;
  textContent: string | null;
}
interface Canvas {
  width: number;
  height: number;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } | null;
}
/** How many pixels of a canvas are not transparent (a chart drew something). */
const paintedPixels = (c: Canvas) => {
  const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) n++;
  return n;
};
const withCookie = (value: string, init: RequestInit = {}) => ({ ...init, headers: { ...(init.headers as Record<string, string>), cookie: `logmeter_session=${value}` } });

async function signIn(token: string) {
  await page.goto(`${base()}/#/logs`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

// In a suite, so its hooks run after the fixture's (which makes the tables).
describe('the panel in chromium', () => {
  before(async () => {
    await insertLogs(RECENT);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    page = await context.newPage();
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('console', (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
    });
  });

  after(async () => {
    await browser?.close();
  });

  test('the panel page and its assets come with a strict CSP and no inline script or style', async () => {
    for (const p of ['/', '/assets/panel.js', '/assets/panel.css', '/api/v1/logs']) {
      const res = await fetch(`${base()}${p}`);
      assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, p);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', p);
    }
    assert.match(CONTENT_SECURITY_POLICY, /^default-src 'self'; script-src 'self'; style-src 'self';/);
    const html = await (await fetch(`${base()}/`)).text();
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son\w+=/i, 'no inline script, style or handler');
  });

  test('a tenant signs in with its token and sees its own lines only, markup and escapes as text', async () => {
    await signIn(TOKENS.acme);
    const cookie = await sessionCookie();
    assert.ok(cookie, 'session cookie set');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.secure, false, 'plain HTTP here: Secure only over TLS');
    assert.ok(cookie.expires > now / 1000 && cookie.expires <= Date.now() / 1000 + 12 * 3600 + 5, 'the cookie expires within the session lifetime');
    assert.notEqual(cookie.value, TOKENS.acme, 'the cookie is a session id, not the token');

    await page.locator('tr[data-event-id="p-acme"]').waitFor();
    const shownIds = await page.locator('table.logs tbody tr').evaluateAll((rows: El[]) => rows.map((r) => r.getAttribute('data-event-id')));
    assert.deepEqual(shownIds, ['p-acme', 'p-ansi', 'p-xss'], 'the last 24 hours of acme, newest first');
    assert.equal(await page.locator('tr[data-event-id="p-xss"] td.line').textContent(), XSS);
    assert.equal(await page.locator('tr[data-event-id="p-ansi"] td.line').textContent(), ANSI);
    assert.equal(await page.locator('#app img').count(), 0, 'no element made from a line');
    assert.equal(await page.locator('#app').evaluate((el: El) => el.textContent?.includes('GLOBEX-ONLY')), false);
    await shot('logs');
    assert.deepEqual(dialogs, []);
  });

  test('a day of the fixture lines, newest first, with lifecycle entries inline', async () => {
    await page.locator('input[name="from"]').fill('2026-11-26');
    await page.locator('input[name="to"]').fill('2026-11-27');
    await page.locator('input[name="app"]').fill('web');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('tr[data-event-id="al-4"]').waitFor();
    const rows = await page.locator('table.logs tbody tr').evaluateAll((rs: El[]) => rs.map((r) => `${r.getAttribute('data-event-id')}:${r.className}`));
    assert.deepEqual(rows, ['al-4:event bad', 'a-9:', 'a-8:', 'a-5:', 'a-4:', 'a-3:', 'a-2:', 'a-1:', 'al-2:event', 'al-1:event']);
    assert.equal(await page.locator('tr[data-event-id="al-4"] td.line').textContent(), 'diedie exit_code=3');
  });

  test('the live tail shows a new line of the same search, and never another tenant’s', async () => {
    await page.locator('input[name="from"]').fill('24h');
    await page.locator('input[name="to"]').fill('');
    await page.locator('input[name="app"]').fill('web');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('tr[data-event-id="p-acme"]').waitFor();
    await page.getByLabel('Live tail').check();
    await page.getByText('(live)').waitFor();
    const suffix = randomBytes(4).toString('hex');
    await insertLogs([line(`p-g-${suffix}`, 'globex', 'web', Date.now(), `globex tail ${suffix}`)]);
    await insertLogs([line(`p-t-${suffix}`, 'acme', 'web', Date.now(), `tailed ${XSS} ${suffix}`)]);
    await page.locator(`tr[data-event-id="p-t-${suffix}"]`).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator(`tr[data-event-id="p-t-${suffix}"] td.line`).textContent(), `tailed ${XSS} ${suffix}`);
    assert.equal(await page.locator(`tr[data-event-id="p-g-${suffix}"]`).count(), 0);
    assert.equal(await page.locator('table.logs tbody tr').first().getAttribute('data-event-id'), `p-t-${suffix}`, 'newest on top');
    assert.equal(await page.locator('#app img').count(), 0);
    await page.getByLabel('Live tail').uncheck();
    assert.deepEqual(dialogs, []);
  });

  test('the tail endpoint is scoped like the search: another tenant’s line never arrives', async () => {
    const res = await fetch(`${base()}/api/v1/logs/tail?app=web`, { headers: { authorization: `Bearer ${TOKENS.globex}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const reader = res.body!.getReader();
    const suffix = randomBytes(4).toString('hex');
    await insertLogs([line(`q-a-${suffix}`, 'acme', 'web', Date.now(), `acme ${suffix}`), line(`q-g-${suffix}`, 'globex', 'web', Date.now(), `globex ${suffix}`)]);
    let text = '';
    while (!text.includes(`q-g-${suffix}`)) text += new TextDecoder().decode((await reader.read()).value as Uint8Array | undefined);
    await reader.cancel();
    const events = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => (JSON.parse(l.slice(6)) as { event_id: string; tenant: string }));
    assert.deepEqual(events.map((e) => [e.event_id, e.tenant]), [[`q-g-${suffix}`, 'globex']]);
    assert.equal((await fetch(`${base()}/api/v1/logs/tail`)).status, 401);
  });

  test('apps: acme’s containers with their state and a lifecycle timeline; globex’s container not even by URL', async () => {
    await page.goto(`${base()}/#/apps`);
    await page.locator('tr[data-container-id]').first().waitFor();
    const rows = await page.locator('tr[data-container-id]').evaluateAll((rs: El[]) => rs.map((r) => r.getAttribute('data-container-id')));
    assert.deepEqual(new Set(rows), new Set([cid('acme', 'web-1'), cid('acme', 'api-1')]));
    await page.getByRole('button', { name: 'web-1' }).click();
    await page.locator('.timeline li[data-event-id="al-4"]').waitFor();
    assert.equal(await page.locator('.timeline li[data-event-id="al-4"]').textContent(), '2026-11-26 10:00:09 die exit code 3');
    assert.equal(await page.locator('.timeline li[data-event-id="al-4"]').getAttribute('class'), 'bad');
    const cookie = (await sessionCookie())!.value;
    assert.equal((await fetch(`${base()}/api/v1/containers/${cid('globex', 'web-1')}/lifecycle`, withCookie(cookie))).status, 404);
  });

  test('apps: an app’s autoscale signal (p95 vs target, rate, replicas, mode) charted and tabled, and its route set; globex’s app not even by URL', async () => {
    // Three signals of acme/web a bucket apart (the last hour comes in 5 s buckets), and globex's of an app of the same name.
    const t = Math.floor(Date.now() / 5000) * 5000 - 60_000;
    await ch.insert('autoscale_signals', [
      signalFixture('acme', 'web', t, { p95: 120, rate: 10, current: 1, recommended: 1 }),
      signalFixture('acme', 'web', t + 5000, { p95: 640, rate: 30.5, current: 1, recommended: 3, mode: 'panic', reason: 'p95 640 ms > target 300 ms; 1 → 3 replicas' }),
      signalFixture('acme', 'web', t + 10_000, { p95: null, rate: 2, current: 3, recommended: 3, reason: 'holding 3 replicas' }),
      signalFixture('globex', 'web', t + 5000, { p95: 5, rate: 999, current: 7, recommended: 7 }),
      signalFixture('globex', 'shop', t, { p95: 50, rate: 4, current: 2, recommended: 2 }),
    ]);
    const routes = new RouteSetStore(ch, createLogger('silent', 2));
    await routes.published([
      routeSetFixture('acme', 'web', 'web.acme.test', 2, t, [['web-1', '172.18.0.2', 8080], ['web-2', '172.18.0.4', 8080]]),
      routeSetFixture('globex', 'web', 'web.globex.test', 1, t, [['web-1', '172.19.0.3', 80]]),
      routeSetFixture('globex', 'shop', 'shop.globex.test', 1, t, [['shop-1', '172.19.0.2', 9090]]),
    ]);

    await page.goto(`${base()}/#/apps`);
    await page.locator('select[name="app"]').waitFor();
    assert.deepEqual(await page.locator('select[name="app"] option').allTextContents(), ['api', 'web'], 'acme’s apps only');
    await page.locator('select[name="app"]').selectOption('web');
    await page.locator('.signals-table tbody tr').first().waitFor({ state: 'attached' });
    const time = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
    const rows = await page.locator('.signals-table tbody tr').evaluateAll((rs: Array<El & { querySelectorAll(s: string): ArrayLike<El> }>) => rs.map((r) => Array.from(r.querySelectorAll('td'), (td) => td.textContent)));
    assert.deepEqual(rows, [
      [time(t), 'stable', '120', '300', '10', '1', '1'],
      [time(t + 5000), 'panic', '640', '300', '30.5', '3', '1'],
      [time(t + 10_000), 'stable', '', '300', '2', '3', '3'],
    ]);
    assert.equal(await page.locator('.signals p').first().textContent(), 'Now: stable 3 running, 3 recommended · holding 3 replicas');
    for (const chart of ['latency', 'scaling']) {
      const painted = await page.locator(`.plot[data-chart="${chart}"] canvas`).first().evaluate(paintedPixels);
      assert.ok(painted > 100, `the ${chart} chart drew ${painted} pixels`);
    }
    await page.locator('tr[data-host]').first().waitFor();
    assert.deepEqual(await page.locator('tr[data-host]').evaluateAll((rs: El[]) => rs.map((r) => r.getAttribute('data-host'))), ['web.acme.test']);
    assert.deepEqual(await page.locator('tr[data-host="web.acme.test"] .upstreams li').allTextContents(), [
      `172.18.0.2:8080 (${cid('acme', 'web-1').slice(0, 12)})`,
      `172.18.0.4:8080 (${cid('acme', 'web-2').slice(0, 12)})`,
    ]);
    assert.equal(await page.locator('#app').evaluate((el: El) => /globex|999/.test(el.textContent ?? '')), false);
    await shot('apps');

    const cookie = (await sessionCookie())!.value;
    for (const p of ['/api/v1/apps/shop/signals', '/api/v1/apps/shop/routes', '/api/v1/apps/shop/routes?tenant=globex']) {
      assert.equal((await fetch(`${base()}${p}`, withCookie(cookie))).status, 404, p);
    }
  });

  test('usage: a chart per meter with data, and totals equal to /api/v1/usage', async () => {
    // Container-seconds by size and billed vs free traffic, two days ago (globex's never shown to acme).
    const day = Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 2 * 24 * HOUR;
    const sized = (id: string, tenant: string, ms: number, size: string, quantity: number) => ({ ...usageRow(id, tenant, 'web', 'hour', ms, 'container_seconds', 'second', quantity), dimensions: { size } });
    await ch.insert('usage', [
      sized('pcs-1', 'acme', day, 'small', 3600),
      sized('pcs-2', 'acme', day + HOUR, 'small', 1800),
      sized('pcs-3', 'acme', day, 'large', 600),
      sized('pcs-4', 'globex', day, 'small', 7200),
      usageRow('pcs-5', 'acme', 'web', 'hour', day, 'egress_external_bytes', 'byte', 2_000_000),
      usageRow('pcs-6', 'acme', 'api', 'hour', day + HOUR, 'egress_external_bytes', 'byte', 500_000),
      usageRow('pcs-7', 'acme', 'web', 'hour', day, 'internal_bytes', 'byte', 5000),
    ]);
    await page.goto(`${base()}/#/usage`);
    await page.locator('select[name="period"]').selectOption('day');
    await page.locator('article[data-meter="requests"] canvas').first().waitFor();
    const api = (await call('/api/v1/usage?period=day&from=31d', TOKENS.acme)).body.items as Array<{ meter: string; quantity: number }>;
    for (const meter of ['requests', 'egress_bytes']) {
      const expected = api.filter((i) => i.meter === meter).reduce((s, i) => s + i.quantity, 0);
      assert.equal(await page.locator(`article[data-meter="${meter}"] .total`).getAttribute('data-total'), String(expected), meter);
    }
    const painted = await page.locator('article[data-meter="requests"] canvas').first().evaluate(paintedPixels);
    assert.ok(painted > 100, `the chart drew ${painted} pixels`);
    const seriesTotal = (meter: string, series: string) => page.locator(`article[data-meter="${meter}"] li[data-series="${series}"]`).getAttribute('data-total');
    const apiTotal = (meter: string, size?: string) => String(api.filter((i) => i.meter === meter && (size === undefined || (i as { dimensions?: Record<string, string> }).dimensions?.size === size)).reduce((sum, i) => sum + i.quantity, 0));
    assert.equal(await seriesTotal('container_seconds', 'size=small'), '5400');
    assert.equal(await seriesTotal('container_seconds', 'size=large'), '600');
    assert.equal(await seriesTotal('container_seconds', 'size=small'), apiTotal('container_seconds', 'small'));
    assert.equal(await seriesTotal('traffic', 'egress_external_bytes'), '2500000');
    assert.equal(await seriesTotal('traffic', 'internal_bytes'), '5000');
    assert.equal(await seriesTotal('traffic', 'egress_external_bytes'), apiTotal('egress_external_bytes'));
    assert.deepEqual(await page.locator('article[data-meter="traffic"] li').allTextContents(), ['external egress (billed): 2,500,000', 'internal (free): 5,000']);
    assert.equal(await page.locator('article[data-meter="traffic"] canvas').first().evaluate(paintedPixels) > 100, true);
    await shot('usage');
  });

  test('bills: the report list, its line items, and CSV and JSON downloads byte for byte the files logmeter report wrote', async () => {
    // A day of globex usage in the price list's units, and what `logmeter report --tenant globex --period 2026-11-20` asks a running process for.
    const day = Date.parse('2026-11-20T00:00:00Z');
    await ch.insert('usage', [usageRow('pu-1', 'globex', 'shop', 'hour', day + HOUR, 'requests', 'request', 12_345), usageRow('pu-2', 'globex', 'shop', 'hour', day + 2 * HOUR, 'egress_external_bytes', 'byte', 3 * 1024 ** 3)]);
    const res = await fetch(`${base()}/api/v1/admin/report`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'globex', period: '2026-11-20', format: 'csv' }),
    });
    const answer = (await res.json()) as { text: string; files: { csv: string; json: string } };
    assert.equal(res.status, 200, JSON.stringify(answer));

    // globex in a context of its own, next to acme's session.
    const globex = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    try {
      const gp = await globex.newPage();
      await gp.goto(`${base()}/#/bills`);
      await gp.getByLabel('API token').fill(TOKENS.globex);
      await gp.getByRole('button', { name: 'Sign in' }).click();
      await gp.getByRole('button', { name: 'globex/2026-11-20' }).click();
      await gp.getByRole('link', { name: 'Download CSV' }).waitFor();
      assert.equal(await gp.getByRole('button', { name: /^acme\// }).count(), 0);
      for (const [name, file] of [['Download CSV', answer.files.csv], ['Download JSON', answer.files.json]] as const) {
        const [download] = await Promise.all([gp.waitForEvent('download'), gp.getByRole('link', { name }).click()]);
        assert.deepEqual(await readFile(await download.path()), await readFile(file), name);
      }
      assert.equal((await readFile(answer.files.csv, 'utf8')), answer.text);
      if (SHOTS) await gp.screenshot({ path: path.join(SHOTS, 'bills.png') });
    } finally {
      await globex.close();
    }

    // acme's session cannot fetch globex's report or its files by URL, nor widen its scope with tenant=.
    const cookie = (await sessionCookie())!.value;
    for (const p of ['/api/v1/reports/globex/2026-11-20', '/api/v1/reports/globex/2026-11-20?tenant=globex', '/api/v1/report-files/globex/2026-11-20.csv', '/api/v1/report-files/globex/2026-11-20.json?tenant=globex']) {
      assert.equal((await fetch(`${base()}${p}`, withCookie(cookie))).status, 404, p);
    }
    await page.goto(`${base()}/#/bills`);
    await page.getByRole('button', { name: 'acme/2026-11-26' }).click();
    await page.getByRole('cell', { name: 'egress_bytes' }).waitFor();
    assert.equal(await page.getByRole('button', { name: /^globex\// }).count(), 0);
    // acme's report has rows but billing wrote no files for it: no link that would answer 404.
    assert.equal(await page.locator('.downloads a').count(), 0);
    assert.match((await page.locator('.downloads').textContent()) ?? '', /^No files to download/);
    assert.equal((await fetch(`${base()}/api/v1/report-files/acme/2026-11-26.csv`, withCookie(cookie))).status, 404);
  });

  test('CSRF: a state change with the cookie but without the session’s proof is refused; the cookie never opens a POST route', async () => {
    const cookie = (await sessionCookie())!.value;
    const end = await fetch(`${base()}/panel/session/end`, withCookie(cookie, { method: 'POST', headers: { origin: 'https://evil.example' } }));
    assert.equal(end.status, 403);
    assert.equal((await fetch(`${base()}/api/v1/logs`, withCookie(cookie))).status, 200, 'the session still works');
    // A cross-site form cannot send the sign-in header either.
    const form = await fetch(`${base()}/panel/session`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: `token=${TOKENS.acme}` });
    assert.equal(form.status, 403);
    const sql = await fetch(`${base()}/api/v1/admin/sql`, withCookie(cookie, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sql":"SELECT 1"}' }));
    assert.equal(sql.status, 401);
  });

  test('sign-out forgets the session: the API answers 401 to the old cookie, the page shows sign-in', async () => {
    const cookie = (await sessionCookie())!.value;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    assert.equal(await sessionCookie(), undefined);
    assert.equal((await fetch(`${base()}/api/v1/logs`, withCookie(cookie))).status, 401);
  });

  test('a forged cookie lands on sign-in', async () => {
    await context.addCookies([{ name: 'logmeter_session', value: randomBytes(32).toString('base64url'), url: base() }]);
    await page.goto(`${base()}/#/logs`);
    await page.getByLabel('API token').waitFor();
    await shot('signin');
    assert.equal(await page.locator('table.logs').count(), 0);
  });

  test('the operator token adds a tenant picker', async () => {
    await context.clearCookies();
    await signIn(ADMIN);
    const picker = page.getByLabel('Tenant');
    assert.deepEqual(await picker.locator('option').allTextContents(), ['acme', 'globex']);
    await picker.selectOption('globex');
    await page.locator('tr[data-event-id="p-globex"]').waitFor();
    assert.equal(await page.locator('tr[data-event-id="p-acme"]').count(), 0);
    await page.setViewportSize({ width: 390, height: 800 });
    await shot('phone');
    assert.deepEqual(dialogs, []);
    assert.deepEqual(cspViolations, []);
  });
});
