/**
 * The demo workload of `logmeter up --demo`: a few tenant containers, labelled the way
 * a platform labels its tenants' apps, printing access and debug logs at a steady
 * pace. Everything it creates carries the label `<prefix>demo=true` (`logmeter.demo`) and is removed
 * when the demo stops, and again when a demo starts (a killed one left it behind),
 * together with the scaler's replicas of the demo apps.
 *
 * The load follows one clock for every container of an app (`DEMO_T0`, the demo's start,
 * which the scaler's replicas copy): a busy phase of {@link BUSY_SECONDS}, requests of
 * 0.6-0.9 s (the autoscaler panics, the scaler adds replicas), then a quiet one of
 * {@link QUIET_SECONDS}, requests under 0.1 s. The quiet phase outlasts the panic hold
 * (a stable window, 60 s) plus the scale-down cooldowns (120 s), so within ten minutes a
 * watcher sees the opted-in apps (`autoscale.max=3`) go up and come down again. acme/jobs
 * does not opt in: its operation log says once that it is not scaled.
 */
import { randomBytes } from 'node:crypto';
import type { Docker } from '../lib/docker.js';
import { BASE_IMAGE } from '../lib/docker.js';
import type { Logger } from '../lib/logger.js';

export const DEMO_LABEL = 'logmeter.demo';

/** The demo label under a label prefix (`logmeter.demo` with the default one). */
export function demoLabel(prefix: string): string {
  return `${prefix}demo`;
}

export interface DemoContainer {
  name: string;
  tenant: string;
  app: string;
  labels: Record<string, string>;
  script: string;
  env: string[];
  networks: string[];
  publish?: number;
}

/** The demo's tenants: each gets an API token for the panel when none is configured. */
export const DEMO_TENANTS = ['acme', 'globex'] as const;

/**
 * The API tokens of a demo run: the configured ones, plus a random one for each demo
 * tenant that has none (new at every start; `logmeter up --demo` prints them, so a new
 * user can sign in to the panel as a tenant). `created` lists the tenants given one.
 */
export function demoTokens(configured: Record<string, string>): { tokens: Record<string, string>; created: string[] } {
  const tokens = { ...configured };
  const created: string[] = [];
  for (const t of DEMO_TENANTS) {
    if (tokens[t]) continue;
    tokens[t] = `demo-${t}-${randomBytes(18).toString('base64url')}`;
    created.push(t);
  }
  return { tokens, created };
}

export const DEMO_NETWORKS = { external: 'logmeter-demo-external', internal: 'logmeter-demo-internal' } as const;

/** Seconds of slow requests at the start of each demo cycle. */
export const BUSY_SECONDS = 120;
/** Seconds of fast requests after them. */
export const QUIET_SECONDS = 360;

const ACCESS_LOG = [
  'head -c 200000 /dev/zero > /www/data.bin',
  'httpd -f -p 80 -h /www &',
  'i=0',
  'while true; do',
  '  i=$((i+1)); s=200; [ $((i % 23)) -eq 0 ] && s=503',
  // Busy, then quiet, on the demo's clock (DEMO_T0): every replica of an app is in the same phase.
  `  t=$(( (i * 37) % 100 )); [ $(( ($(date +%s) - DEMO_T0) % ${BUSY_SECONDS + QUIET_SECONDS} )) -lt ${BUSY_SECONDS} ] && t=$(( 600 + (i * 37) % 300 ))`,
  '  printf \'10.0.0.%d - - [%s] "GET /products/%d HTTP/1.1" %d %d "-" "demo-client/1.0" %d.%03d\\n\' $((i % 200)) "$(date -u +%d/%b/%Y:%H:%M:%S) +0000" $((i % 50)) $s $((512 + i % 1000)) $((t / 1000)) $((t % 1000))',
  '  [ $((i % 40)) -eq 0 ] && echo "worker $i: cache refresh took $((i % 90)) ms" >&2',
  '  sleep 0.2',
  'done',
].join('\n');

const WORKER_LOG = [
  'i=0',
  'while true; do',
  '  i=$((i+1))',
  // Internal traffic: the worker fetches from the shop over the internal network (free).
  '  [ $((i % 10)) -eq 0 ] && timeout 5 wget -q -O /dev/null http://logmeter-demo-acme-shop-1/data.bin',
  '  printf \'{"level":"info","msg":"job done","job":%d,"ms":%d}\\n\' $i $(( (i * 13) % 500 ))',
  '  [ $((i % 10)) -eq 0 ] && echo "WARN queue depth $((i % 7)) above soft limit" >&2',
  '  sleep 0.5',
  'done',
].join('\n');

/** Stands for the internet: no tenant label, so not metered itself; its downloads are the apps' external traffic. */
const INTERNET = [
  'while true; do',
  '  timeout 5 wget -q -O /dev/null http://logmeter-demo-acme-shop-1/data.bin',
  '  timeout 5 wget -q -O /dev/null http://logmeter-demo-globex-api-1/data.bin',
  '  sleep 2',
  'done',
].join('\n');

/** The demo's containers; `t0` (epoch seconds) starts the busy phase of the load. */
export function demoContainers(prefix = 'logmeter.', t0 = Math.floor(Date.now() / 1000)): DemoContainer[] {
  const env = [`DEMO_T0=${t0}`];
  const l = (tenant: string, app: string, extra: Record<string, string> = {}) => ({
    [`${prefix}tenant`]: tenant,
    [`${prefix}app`]: app,
    [demoLabel(prefix)]: 'true',
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${prefix}${k}`, v])),
  });
  return [
    { name: 'logmeter-demo-acme-shop-1', tenant: 'acme', app: 'shop', labels: l('acme', 'shop', { 'log-format': 'nginx-combined', size: 'small', 'lb-host': 'shop.acme.test', 'lb-port': '80', 'autoscale.max': '3' }), script: ACCESS_LOG, env, networks: [DEMO_NETWORKS.external, DEMO_NETWORKS.internal], publish: 80 },
    { name: 'logmeter-demo-acme-jobs-1', tenant: 'acme', app: 'jobs', labels: l('acme', 'jobs', { size: 'small' }), script: WORKER_LOG, env, networks: [DEMO_NETWORKS.internal] },
    { name: 'logmeter-demo-globex-api-1', tenant: 'globex', app: 'api', labels: l('globex', 'api', { 'log-format': 'nginx-combined', size: 'medium', 'lb-host': 'api.globex.test', 'lb-port': '80', 'autoscale.max': '3' }), script: ACCESS_LOG, env, networks: [DEMO_NETWORKS.external], publish: 80 },
    { name: 'logmeter-demo-internet', tenant: '', app: '', labels: { [demoLabel(prefix)]: 'true' }, script: INTERNET, env, networks: [DEMO_NETWORKS.external] },
  ];
}

export async function startDemo(docker: Docker, logger: Logger, prefix = 'logmeter.'): Promise<string[]> {
  await stopDemo(docker, logger, prefix);
  const specs = demoContainers(prefix);
  const networks = [...new Set(specs.flatMap((s) => s.networks))];
  for (const name of networks) {
    await docker.createNetwork({ Name: name, Driver: 'bridge', Labels: { [demoLabel(prefix)]: 'true' } });
  }
  const ids: string[] = [];
  for (const s of specs) {
    const c = await docker.createContainer({
      name: s.name,
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', s.script],
      Env: s.env,
      Labels: s.labels,
      ExposedPorts: s.publish ? { [`${s.publish}/tcp`]: {} } : {},
      HostConfig: {
        NetworkMode: s.networks[0],
        PortBindings: s.publish ? { [`${s.publish}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] } : {},
        Memory: 64 * 1024 * 1024,
        Init: true,
        LogConfig: { Type: 'json-file', Config: { 'max-size': '20m', 'max-file': '2' } },
      },
    });
    for (const net of s.networks.slice(1)) await docker.getNetwork(net).connect({ Container: c.id });
    await c.start();
    ids.push(c.id);
    logger.info({ container: s.name, tenant: s.tenant || undefined, app: s.app || undefined }, 'demo container started');
  }
  return ids;
}

/**
 * Removes every demo container (killed and removed in one call each, all at once) and then
 * its networks. The scaler's replicas of the demo apps are among them: a replica copies its
 * source's labels, the demo label included, so a demo killed with replicas running leaves
 * nothing behind once the next one starts.
 */
export async function stopDemo(docker: Docker, logger: Logger, prefix = 'logmeter.'): Promise<void> {
  const filters = JSON.stringify({ label: [`${demoLabel(prefix)}=true`] });
  const removed = await Promise.allSettled(
    (await docker.listContainers({ all: true, filters })).map(async (c) => {
      // The demo's shells ignore SIGTERM: a graceful stop would wait Docker's 10 s for nothing.
      await docker.getContainer(c.Id).remove({ force: true });
      logger.info({ container: c.Names[0] }, 'demo container removed');
    }),
  );
  const failed = removed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  await Promise.all((await docker.listNetworks({ filters })).map((n) => docker.getNetwork(n.Id).remove()));
}
