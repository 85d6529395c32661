import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_IMAGE, dockerClient, type Docker } from '../lib/docker.js';
import { eventId } from '../lib/event-id.js';
import { type Identity } from '../lib/identity.js';
import { classify, readInterfaceMacs, sampleContainer, StatsRounds, toStatsSample, type DockerStats, type MacCache, type TrafficClasses } from '../ingest/stats.js';
import { namespace } from './helpers/env.js';

const identity: Identity = { tenant: 'acme', app: 'web', logFormat: null, lbHost: null, lbPort: null, size: 'small' };
const classes: TrafficClasses = { internalNetworks: ['backplane'], externalNetworks: ['public'], defaultTrafficClass: 'external' };

test('classify: internal list, then external list, then the default; an unknown network is unknown', () => {
  assert.equal(classify('backplane', classes), 'internal');
  assert.equal(classify('public', classes), 'external');
  assert.equal(classify('bridge', classes), 'external');
  assert.equal(classify('bridge', { ...classes, defaultTrafficClass: 'internal' }), 'internal');
  assert.equal(classify(null, classes), 'unknown');
  assert.equal(classify('both', { internalNetworks: ['both'], externalNetworks: ['both'], defaultTrafficClass: 'unknown' }), 'internal');
});

test('toStatsSample maps interfaces to networks by MAC and takes counters as read', () => {
  const read = '2026-11-26T09:06:05.326953252Z';
  const stats: DockerStats = {
    read,
    networks: {
      eth1: { rx_bytes: 1166, rx_packets: 13, tx_bytes: 1_000_554, tx_packets: 700 },
      eth0: { rx_bytes: 1112, rx_packets: 12, tx_bytes: 3_001_234, tx_packets: 2100 },
      eth2: { rx_bytes: 5, rx_packets: 1, tx_bytes: 7, tx_packets: 1 },
    },
    cpu_stats: { cpu_usage: { total_usage: 23_191_156 } },
    memory_stats: { usage: 835_584, limit: 25_276_502_016 },
    blkio_stats: {
      io_service_bytes_recursive: [
        { op: 'Read', value: 4096 },
        { op: 'Write', value: 8192 },
        { op: 'Sync', value: 100 },
        { op: 'Total', value: 12_288 },
        { op: 'Read', value: 1000 },
        { op: 'write', value: 10 },
      ],
    },
  };
  const sample = toStatsSample({
    containerId: 'c1',
    containerName: 'web-1',
    identity,
    node: 'node-a',
    stats,
    macs: { eth0: '02:42:ac:12:00:02', eth1: '02:42:ac:13:00:02', eth2: '02:42:ac:14:00:09' },
    networks: { public: { MacAddress: '02:42:AC:12:00:02' }, backplane: { MacAddress: '02:42:ac:13:00:02' }, other: { MacAddress: '' } },
    classes,
  });
  assert.deepEqual(sample, {
    event_id: eventId('stats', 'c1', read),
    tenant: 'acme',
    app: 'web',
    node: 'node-a',
    container_id: 'c1',
    ts: Date.UTC(2026, 10, 26, 9, 6, 5, 326),
    container_name: 'web-1',
    size: 'small',
    interfaces: [
      { name: 'eth0', network: 'public', traffic_class: 'external', rx_bytes: 1112, tx_bytes: 3_001_234, rx_packets: 12, tx_packets: 2100 },
      { name: 'eth1', network: 'backplane', traffic_class: 'internal', rx_bytes: 1166, tx_bytes: 1_000_554, rx_packets: 13, tx_packets: 700 },
      { name: 'eth2', network: null, traffic_class: 'unknown', rx_bytes: 5, tx_bytes: 7, rx_packets: 1, tx_packets: 1 },
    ],
    cpu_usage_ns: 23_191_156,
    memory_bytes: 835_584,
    memory_limit_bytes: 25_276_502_016,
    blkio_read_bytes: 5096,
    blkio_write_bytes: 8202,
  });
});

test('toStatsSample on what Docker returns for a stopped container gives zeros', () => {
  // Captured from dockerd 20.10 (cgroup v1) for a stopped container.
  const stopped = JSON.parse(
    '{"read":"0001-01-01T00:00:00Z","preread":"0001-01-01T00:00:00Z","pids_stats":{},"blkio_stats":{"io_service_bytes_recursive":null,"io_serviced_recursive":null},"num_procs":0,"storage_stats":{},"cpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"usage_in_usermode":0},"throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},"memory_stats":{},"name":"/probe1","id":"d8048"}',
  ) as DockerStats;
  const sample = toStatsSample({ containerId: 'd8048', containerName: 'probe1', identity, node: 'n', stats: stopped, macs: {}, networks: {}, classes });
  assert.deepEqual(sample.interfaces, []);
  assert.deepEqual(
    [sample.cpu_usage_ns, sample.memory_bytes, sample.memory_limit_bytes, sample.blkio_read_bytes, sample.blkio_write_bytes],
    [0, 0, 0, 0, 0],
  );
  const bare = toStatsSample({ containerId: 'x', containerName: 'x', identity, node: 'n', stats: { read: '' }, macs: {}, networks: {}, classes });
  assert.equal(bare.ts, 0);
  assert.equal(bare.cpu_usage_ns, 0);
});

test('stats rounds never overlap: a round that outlasts the interval delays the next one until it ended', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'] });
  try {
    const ends: Array<() => void> = [];
    const rounds = new StatsRounds(() => new Promise<void>((resolve) => ends.push(resolve)), 1000);
    // Lets the promise callbacks of a round that ended run before the clock moves again.
    const settle = () => new Promise<void>((r) => setImmediate(r));
    rounds.start();
    mock.timers.tick(1000);
    assert.equal(ends.length, 1, 'the first round starts one interval after start');
    mock.timers.tick(5000);
    assert.equal(ends.length, 1, 'no round starts while the first one runs, however long it takes');
    ends[0]!();
    await settle();
    mock.timers.tick(0);
    assert.equal(ends.length, 2, 'the next round starts as soon as the long one ended');
    mock.timers.tick(300);
    ends[1]!();
    await settle();
    mock.timers.tick(699);
    assert.equal(ends.length, 2, 'a short round: the next starts one interval after it started');
    mock.timers.tick(1);
    assert.equal(ends.length, 3);
    const stopped = rounds.stop();
    ends[2]!();
    await stopped;
    mock.timers.tick(10_000);
    assert.equal(ends.length, 3, 'no round after stop');
  } finally {
    mock.timers.reset();
  }
});

const EXT_BYTES = 3_000_000;
const INT_BYTES = 1_000_000;
const PORT = 8080;

/** Removes every container and network the run labelled, whatever state the test left them in. */
async function removeLabelled(docker: Docker, label: string): Promise<void> {
  const filters = JSON.stringify({ label: [label] });
  const containers = await docker.listContainers({ all: true, filters });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  const networks = await docker.listNetworks({ filters });
  await Promise.all(networks.map((n) => docker.getNetwork(n.Id).remove()));
}

/**
 * A client that fetches `url` once, retrying only until the server listens (a refused
 * connection costs the server a few bytes of RST), and fails unless it got `bytes` bytes.
 */
async function fetchOnce(docker: Docker, name: string, network: string, labels: Record<string, string>, url: string, bytes: number): Promise<void> {
  const script = [
    'i=0',
    `until timeout 20 wget -q -O /tmp/f ${url}; do i=$((i+1)); [ $i -ge 100 ] && exit 2; sleep 0.1; done`,
    `[ $(wc -c < /tmp/f) -eq ${bytes} ] || exit 3`,
  ].join('\n');
  const c = await docker.createContainer({
    name,
    Image: BASE_IMAGE,
    Cmd: ['sh', '-c', script],
    Labels: labels,
    HostConfig: { Init: true, NetworkMode: network },
  });
  await c.start();
  const { StatusCode } = (await c.wait()) as { StatusCode: number };
  assert.equal(StatusCode, 0, `${name} fetched ${url}`);
}

test('a server on an external and an internal network: tx bytes per interface, classed by network', { timeout: 180_000 }, async (t) => {
  const ns = namespace();
  const docker = dockerClient(ns.config.docker.host);
  const label = `logmeter.test=${ns.id}`;
  const labels = { 'logmeter.test': ns.id };
  const extNet = `lmtest-ext-${ns.id}`;
  const intNet = `lmtest-int-${ns.id}`;
  const srvName = `lmtest-srv-${ns.id}`;
  const runClasses: TrafficClasses = { internalNetworks: [intNet], externalNetworks: [extNet], defaultTrafficClass: 'unknown' };
  try {
    const ext = await docker.createNetwork({ Name: extNet, Driver: 'bridge', CheckDuplicate: true, Labels: labels });
    await docker.createNetwork({ Name: intNet, Driver: 'bridge', CheckDuplicate: true, Labels: labels });

    const serve = [
      'mkdir -p /www',
      `head -c ${EXT_BYTES} /dev/zero > /www/ext.bin`,
      `head -c ${INT_BYTES} /dev/zero > /www/int.bin`,
      `exec httpd -f -p ${PORT} -h /www`,
    ].join(' && ');
    const srv = await docker.createContainer({
      name: srvName,
      Image: BASE_IMAGE,
      Cmd: ['sh', '-c', serve],
      Labels: labels,
      HostConfig: { Init: true, NetworkMode: intNet },
    });
    // dockerd numbers the networks a container starts with by name (lmtest-ext would be eth0);
    // connecting the external one after start makes it eth1, so no name order passes for the MAC
    // lookup, and it checks that an interface added to a running container is found.
    await srv.start();
    await ext.connect({ Container: srv.id });

    const info = await srv.inspect();
    const endpoints = info.NetworkSettings.Networks;
    const extEp = endpoints[extNet];
    const intEp = endpoints[intNet];
    assert.ok(extEp && intEp, 'server attached to both networks');

    await Promise.all([
      fetchOnce(docker, `lmtest-cext-${ns.id}`, extNet, labels, `http://${extEp.IPAddress}:${PORT}/ext.bin`, EXT_BYTES),
      fetchOnce(docker, `lmtest-cint-${ns.id}`, intNet, labels, `http://${intEp.IPAddress}:${PORT}/int.bin`, INT_BYTES),
    ]);

    const macs = await readInterfaceMacs(info.State.Pid);
    assert.deepEqual(Object.keys(macs).sort(), ['eth0', 'eth1']);
    assert.deepEqual(new Set(Object.values(macs)), new Set([extEp.MacAddress.toLowerCase(), intEp.MacAddress.toLowerCase()]));

    const macCache: MacCache = new Map();
    const started = performance.now();
    const sample = await sampleContainer(docker, srv.id, { identity, node: 'node-test', classes: runClasses, macCache });
    t.diagnostic(`sampleContainer took ${Math.round(performance.now() - started)} ms`);
    assert.ok(sample, 'running server sampled');
    assert.equal(sample.container_id, info.Id);
    assert.equal(sample.container_name, srvName);
    assert.equal(sample.tenant, 'acme');
    assert.equal(sample.size, 'small');
    assert.ok(sample.cpu_usage_ns > 0 && sample.memory_bytes > 0 && sample.memory_limit_bytes > 0, JSON.stringify(sample));
    assert.equal(sample.interfaces.length, 2);

    const extIf = sample.interfaces.find((i) => i.network === extNet);
    const intIf = sample.interfaces.find((i) => i.network === intNet);
    assert.ok(extIf && intIf, JSON.stringify(sample.interfaces));
    t.diagnostic(`external ${extIf.name} tx ${extIf.tx_bytes} B, internal ${intIf.name} tx ${intIf.tx_bytes} B`);
    assert.equal(extIf.name, 'eth1', 'the network connected after start is eth1');
    assert.equal(macs[extIf.name], extEp.MacAddress.toLowerCase(), 'external interface found by its MAC');
    assert.equal(macs[intIf.name], intEp.MacAddress.toLowerCase(), 'internal interface found by its MAC');
    assert.equal(extIf.traffic_class, 'external');
    assert.equal(intIf.traffic_class, 'internal');
    assert.ok(extIf.tx_bytes >= EXT_BYTES && extIf.tx_bytes < EXT_BYTES * 1.1, `external tx ${extIf.tx_bytes}`);
    assert.ok(intIf.tx_bytes >= INT_BYTES && intIf.tx_bytes < INT_BYTES * 1.1, `internal tx ${intIf.tx_bytes}`);
    assert.ok(extIf.rx_bytes > 0 && intIf.rx_bytes > 0, 'requests received on both');
    assert.deepEqual(macCache.get(srv.id), { pid: info.State.Pid, macs });

    // A stale entry (another pid: the container restarted) or one that maps nothing is read again.
    const swapped = { eth0: macs.eth1 ?? '', eth1: macs.eth0 ?? '' };
    for (const stale of [{ pid: info.State.Pid + 1, macs: swapped }, { pid: info.State.Pid, macs: {} }]) {
      macCache.set(srv.id, stale);
      const again = await sampleContainer(docker, srv.id, { identity, node: 'node-test', classes: runClasses, macCache });
      assert.equal(again?.interfaces.find((i) => i.network === extNet)?.name, extIf.name);
      assert.deepEqual(macCache.get(srv.id), { pid: info.State.Pid, macs });
    }

    await srv.kill();
    await srv.wait();
    assert.equal(await sampleContainer(docker, srv.id, { identity, node: 'node-test', classes: runClasses, macCache }), undefined, 'stopped');
    assert.equal(macCache.has(srv.id), false, 'cache entry dropped');
    assert.equal(await sampleContainer(docker, `lmtest-absent-${ns.id}`, { identity, node: 'node-test', classes: runClasses }), undefined, 'no such container');
  } finally {
    await removeLabelled(docker, label);
    ns.cleanup();
  }
});
