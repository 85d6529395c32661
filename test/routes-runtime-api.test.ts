/**
 * The HAProxy side of the routes processor: the generated config, the runtime API
 * client against a real HAProxy's admin socket (the load balancer container, no Kafka),
 * and the applier's diff commands (diff.ts) as that HAProxy takes them.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { LogmeterError } from '../lib/errors.js';
import type { Upstream } from '../schemas/events.js';
import { haproxyConfig } from '../processors/routes/haproxy-config.js';
import { startLoadBalancer, type LoadBalancer } from '../processors/routes/haproxy.js';
import { diffHost, reapAction, upstreamServerName } from '../processors/routes/diff.js';
import { HaproxyRuntimeApi, inMaintenance, parseServersState, type ServerState } from '../processors/routes/runtime-api.js';
import { namespace, eventually } from './helpers/env.js';
import { docker, removeTestContainers } from './helpers/docker.js';
import { getWithHost } from './helpers/http.js';
import { freePort } from './helpers/routes.js';

const cid = (n: number) => `${n.toString(16).padStart(12, 'c')}${'0'.repeat(52)}`;

describe('HAProxy config and answers (pure)', () => {
  test('HAProxy config and runtime API answers (parsed, no HAProxy)', () => {
    const cfg = haproxyConfig({ bind: '127.0.0.1:8080', adminSocket: '/d/admin.sock', mapFile: '/d/hosts.map', backendSlots: 3, connectTimeoutMs: 2000, idleTimeoutMs: 30_000, retries: 2 });
    assert.match(cfg, /stats socket \/d\/admin.sock mode 600 level admin expose-fd listeners/);
    assert.match(cfg, /log stdout format raw local0/);
    assert.match(cfg, /bind 127\.0\.0\.1:8080/);
    assert.match(cfg, /capture request header Host len/);
    assert.match(cfg, /use_backend %\[req\.hdr\(host\),field\(1,:\),lower,map\(\/d\/hosts\.map,be_default\)\]/);
    assert.equal(cfg.match(/^backend be_slot_\d+\n {2}balance roundrobin$/gm)?.length, 3);
    const state = parseServersState(
      '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n4 be_slot_0 1 abc 127.0.0.1 2 1 1 1 0 1 0 0 0 0 0 0 - 9 - 0 0 - - 0\n\n',
    );
    assert.deepEqual(state, [{ backend: 'be_slot_0', name: 'abc', address: '127.0.0.1', port: 9, opState: 2, adminState: 1 }]);
    assert.ok(inMaintenance(state[0]!));
    assert.equal(upstreamServerName({ container_id: cid(7), address: '127.0.0.1', port: 1 }), cid(7).slice(0, 12));
  });
});

describe('HAProxy runtime API on a real admin socket', () => {
  const ns = namespace();
  const prefix = `${ns.id}.`;
  let lb: LoadBalancer | undefined;
  let api: HaproxyRuntimeApi;
  let lbPort = 0;
  /** Two upstreams in this process, each answering its own name. */
  const upstreams: Array<{ server: http.Server; port: number }> = [];
  const agent = new http.Agent({ keepAlive: false });

  before(async () => {
    for (const n of ['one', 'two']) {
      const server = http.createServer((_req, res) => res.end(`${n}\n`));
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      upstreams.push({ server, port: (server.address() as net.AddressInfo).port });
    }
    lbPort = await freePort();
    lb = await startLoadBalancer({ docker, dataDir: ns.dataDir, bind: `127.0.0.1:${lbPort}`, labelPrefix: prefix, logger: ns.logger, backendSlots: 4 });
    api = new HaproxyRuntimeApi(lb.adminSocket);
  });

  after(async () => {
    api?.close();
    agent.destroy();
    await lb?.close().catch((err: unknown) => ns.logger.warn({ err }, 'cleanup'));
    for (const u of upstreams) await new Promise((r) => u.server.close(r));
    await removeTestContainers(prefix);
    ns.cleanup();
  });

  const get = (host: string) => getWithHost({ port: lbPort, host, agent, timeoutMs: 3000 });
  const up = (i: number, n: number): Upstream => ({ container_id: cid(n), address: '127.0.0.1', port: upstreams[i]!.port });
  /** `del server`, again while HAProxy still holds idle connections to it (what the applier's reap does on its next pass). */
  const deleteWhenIdle = (backend: string, name: string) =>
    eventually(`${backend}/${name} deleted`, () =>
      api.delServer(backend, name).then(
        () => true,
        (err: unknown) => {
          if (err instanceof LogmeterError && err.code === 'haproxy_server_busy') return undefined;
          throw err;
        },
      ),
    );
  const servers = async (backend: string) => (await api.serversState(backend)).map((s) => `${s.name}@${s.port}${inMaintenance(s) ? ' maint' : ''}`).sort();

  test('what a fresh load balancer shows: its identity, the slot pool, an empty host map', async () => {
    const id = await api.identity();
    assert.ok(id.pid > 0 && id.startTimeSec > 0);
    const backends = await api.backends();
    for (const b of ['be_default', 'be_slot_0', 'be_slot_1', 'be_slot_2', 'be_slot_3']) assert.ok(backends.includes(b), `${b} in ${backends.join(' ')}`);
    assert.ok(!backends.includes('be_slot_4'));
    assert.deepEqual((await api.maps()).map((m) => m.file), [lb!.mapFile]);
    assert.deepEqual([...(await api.showMap(lb!.mapFile))], []);
    assert.deepEqual(await api.serversState(), []);
    assert.equal((await get('nobody.test')).status, 503);
  });

  test("the diff's commands, as HAProxy takes them: a new host, a replica replaced, the host emptied and given back", async () => {
    const host = `rt-${ns.id}.test`;
    const be = 'be_slot_2';
    const one = up(0, 1);
    const two = up(1, 2);
    // A new host: servers and map entry in one round trip.
    let d = diffHost({ host, backend: be, upstreams: [one], current: [], mapped: false, mapFile: lb!.mapFile });
    await api.run(d.bringIn);
    assert.equal(await api.getMapEntry(lb!.mapFile, host), be);
    assert.deepEqual(await servers(be), [`${upstreamServerName(one)}@${one.port}`]);
    assert.deepEqual(await get(host), { status: 200, body: 'one' });

    // Replaced: the new one in, then the old one in maintenance; requests go to the new one only.
    d = diffHost({ host, backend: be, upstreams: [two], current: await api.serversState(be), mapped: true, mapFile: lb!.mapFile });
    await api.run(d.bringIn);
    assert.deepEqual(await servers(be), [`${upstreamServerName(one)}@${one.port}`, `${upstreamServerName(two)}@${two.port}`].sort());
    await api.run(d.takeOut);
    assert.deepEqual(await servers(be), [`${upstreamServerName(one)}@${one.port} maint`, `${upstreamServerName(two)}@${two.port}`].sort());
    for (let i = 0; i < 4; i++) assert.deepEqual(await get(host), { status: 200, body: 'two' });

    // The retired one has no session left: deleted.
    const sessions = await api.sessions(be);
    assert.equal(reapAction(sessions.get(upstreamServerName(one)), 0, 10_000), 'delete');
    await deleteWhenIdle(be, upstreamServerName(one));
    assert.deepEqual(await servers(be), [`${upstreamServerName(two)}@${two.port}`]);

    // The same container on another port: its address changes in place.
    const moved: Upstream = { ...two, port: one.port };
    d = diffHost({ host, backend: be, upstreams: [moved], current: await api.serversState(be), mapped: true, mapFile: lb!.mapFile });
    assert.deepEqual(d.changes, ['address']);
    await api.run(d.bringIn);
    assert.deepEqual(await servers(be), [`${upstreamServerName(two)}@${one.port}`]);
    assert.deepEqual(await get(host), { status: 200, body: 'one' });

    // Emptied: the server to maintenance, deleted, the map entry removed; the host is unknown again.
    d = diffHost({ host, backend: be, upstreams: [], current: await api.serversState(be), mapped: true, mapFile: lb!.mapFile });
    await api.run(d.bringIn);
    await api.run(d.takeOut);
    await deleteWhenIdle(be, upstreamServerName(two));
    await api.delMapEntry(lb!.mapFile, host);
    assert.deepEqual(await api.serversState(be), []);
    assert.equal(await api.getMapEntry(lb!.mapFile, host), undefined);
    assert.equal((await get(host)).status, 503);
  });

  test('refusals carry the command and HAProxy\'s answer; map entries set and read back', async () => {
    const be = 'be_slot_3';
    const s = diffHost({ host: 'x.test', backend: be, upstreams: [up(0, 9)], current: [], mapped: true, mapFile: lb!.mapFile });
    await api.run(s.bringIn);
    await assert.rejects(api.run(s.bringIn), (err: unknown) => err instanceof LogmeterError && err.code === 'haproxy_command_failed' && err.message.includes('add server'));
    await assert.rejects(api.serversState('no_such_backend'), (err: unknown) => err instanceof LogmeterError && err.code === 'haproxy_command_failed');
    await api.setServerState(be, upstreamServerName(up(0, 9)), 'maint');
    await api.delServer(be, upstreamServerName(up(0, 9)));
    const key = 'logmeter:test';
    await api.addMapEntry(lb!.mapFile, key, 'a1');
    await api.setMapEntry(lb!.mapFile, key, 'b2');
    assert.equal(await api.getMapEntry(lb!.mapFile, key), 'b2');
    await api.delMapEntry(lb!.mapFile, key);
    await api.delMapEntry(lb!.mapFile, key);
    assert.equal(await api.getMapEntry(lb!.mapFile, key), undefined);
  });

  test('a restarted HAProxy has none of the run-time changes (what tells the applier it restarted)', async () => {
    const be = 'be_slot_1';
    await api.run(diffHost({ host: 'r.test', backend: be, upstreams: [up(0, 5)], current: [], mapped: false, mapFile: lb!.mapFile }).bringIn);
    await api.addMapEntry(lb!.mapFile, 'logmeter:epoch', 'e1');
    await lb!.restart();
    assert.ok((await api.identity()).pid > 0);
    assert.deepEqual<ServerState[]>(await api.serversState(be), []);
    assert.equal(await api.getMapEntry(lb!.mapFile, 'r.test'), undefined);
    assert.equal(await api.getMapEntry(lb!.mapFile, 'logmeter:epoch'), undefined);
  });
});
