/**
 * The demo workload of `logmeter up --demo`: a few tenant containers, labelled the way
 * a platform labels its tenants' apps, printing access and debug logs at a steady
 * pace. Everything it creates carries the label `logmeter.demo=true` and is removed
 * when the demo stops.
 */
import type { Docker } from '../lib/docker.js';
import { BASE_IMAGE } from '../lib/docker.js';
import type { Logger } from '../lib/logger.js';

export const DEMO_LABEL = 'logmeter.demo';

export interface DemoContainer {
  name: string;
  tenant: string;
  app: string;
  labels: Record<string, string>;
  script: string;
  networks: string[];
  publish?: number;
}

export const DEMO_NETWORKS = { external: 'logmeter-demo-external', internal: 'logmeter-demo-internal' } as const;

const ACCESS_LOG = [
  'head -c 200000 /dev/zero > /www/data.bin',
  'httpd -f -p 80 -h /www &',
  'i=0',
  'while true; do',
  '  i=$((i+1)); s=200; [ $((i % 23)) -eq 0 ] && s=503',
  // The load changes: every other minute is a busy one, when requests take 0.6-0.9 s (the autoscaler panics).
  '  t=$(( (i * 37) % 300 )); [ $(( $(date +%s) / 60 % 2 )) -eq 1 ] && t=$(( 600 + (i * 37) % 300 ))',
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

export function demoContainers(prefix = 'logmeter.'): DemoContainer[] {
  const l = (tenant: string, app: string, extra: Record<string, string> = {}) => ({
    [`${prefix}tenant`]: tenant,
    [`${prefix}app`]: app,
    [DEMO_LABEL]: 'true',
    ...Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${prefix}${k}`, v])),
  });
  return [
    { name: 'logmeter-demo-acme-shop-1', tenant: 'acme', app: 'shop', labels: l('acme', 'shop', { 'log-format': 'nginx-combined', size: 'small', 'lb-host': 'shop.acme.test', 'lb-port': '80' }), script: ACCESS_LOG, networks: [DEMO_NETWORKS.external, DEMO_NETWORKS.internal], publish: 80 },
    { name: 'logmeter-demo-acme-jobs-1', tenant: 'acme', app: 'jobs', labels: l('acme', 'jobs', { size: 'small' }), script: WORKER_LOG, networks: [DEMO_NETWORKS.internal] },
    { name: 'logmeter-demo-globex-api-1', tenant: 'globex', app: 'api', labels: l('globex', 'api', { 'log-format': 'nginx-combined', size: 'medium', 'lb-host': 'api.globex.test', 'lb-port': '80' }), script: ACCESS_LOG, networks: [DEMO_NETWORKS.external], publish: 80 },
    { name: 'logmeter-demo-internet', tenant: '', app: '', labels: { [DEMO_LABEL]: 'true' }, script: INTERNET, networks: [DEMO_NETWORKS.external] },
  ];
}

export async function startDemo(docker: Docker, logger: Logger, prefix = 'logmeter.'): Promise<string[]> {
  await stopDemo(docker, logger);
  const specs = demoContainers(prefix);
  const networks = [...new Set(specs.flatMap((s) => s.networks))];
  for (const name of networks) {
    await docker.createNetwork({ Name: name, Driver: 'bridge', Labels: { [DEMO_LABEL]: 'true' } });
  }
  const ids: string[] = [];
  for (const s of specs) {
    const c = await docker.createContainer({
      name: s.name,
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', s.script],
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

/** Removes the demo's containers (killed and removed in one call each, all at once) and then its networks. */
export async function stopDemo(docker: Docker, logger: Logger): Promise<void> {
  const filters = JSON.stringify({ label: [`${DEMO_LABEL}=true`] });
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
