/**
 * The applier's decisions (processors/routes/diff.ts) without HAProxy: the exact runtime
 * API commands for a route set against a backend's servers, slot choice, map adoption,
 * orphans and reaping. The same commands against a real HAProxy: routes-runtime-api.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LogmeterError } from '../lib/errors.js';
import type { RouteSet, Upstream } from '../schemas/events.js';
import { adoptMap, diffHost, mayRelease, orphans, pickSlot, reapAction, retireSteps, slotBackends, upstreamServerName, type HostDiffInput } from '../processors/routes/diff.js';
import type { ServerState, Step } from '../processors/routes/runtime-api.js';

const MAP = '/d/hosts.map';
const BE = 'be_slot_3';
const cid = (n: number) => `${n.toString(16).padStart(12, 'c')}${'0'.repeat(52)}`;
const name = (n: number) => cid(n).slice(0, 12);
const up = (n: number, port = 40_000 + n, address = '127.0.0.1'): Upstream => ({ container_id: cid(n), address, port });
/** A server as `show servers state` gives it; adminState 1 = maintenance. */
const srv = (n: number, o: { port?: number; address?: string; maint?: boolean; backend?: string } = {}): ServerState => ({
  backend: o.backend ?? BE,
  name: name(n),
  address: o.address ?? '127.0.0.1',
  port: o.port ?? 40_000 + n,
  opState: 2,
  adminState: o.maint ? 1 : 0,
});
const lines = (steps: readonly Step[]) => steps.map((s) => s.line);
const input = (o: Partial<HostDiffInput>): HostDiffInput => ({ host: 'shop.test', backend: BE, upstreams: [], current: [], mapped: true, mapFile: MAP, ...o });
const set = (upstreams: Upstream[]): RouteSet => ({ event_id: 'e', tenant: 'acme', app: 'shop', node: 'n1', container_id: '', ts: 0, host: 'shop.test', version: 1, upstreams, reason: 'test' });

describe('route applier diff (pure)', () => {
  test('a new host in an empty slot: add and enable each server, then its map entry, all in round one', () => {
    const d = diffHost(input({ upstreams: [up(1), up(2)], mapped: false }));
    assert.deepEqual(lines(d.bringIn), [
      `add server ${BE}/${name(1)} 127.0.0.1:40001`,
      `enable server ${BE}/${name(1)}`,
      `add server ${BE}/${name(2)} 127.0.0.1:40002`,
      `enable server ${BE}/${name(2)}`,
      `add map ${MAP} shop.test ${BE}`,
    ]);
    assert.deepEqual(d.takeOut, []);
    assert.deepEqual(d.leaving, []);
    assert.equal(d.maps, true);
    assert.deepEqual(d.changes, ['add', 'add', 'map']);
  });

  test('nothing changed: no command', () => {
    const d = diffHost(input({ upstreams: [up(1), up(2)], current: [srv(1), srv(2)] }));
    assert.deepEqual(d, { bringIn: [], leaving: [], takeOut: [], maps: false, changes: [] });
  });

  test('a replica replaced: the new one is added in round one, the old one put in maintenance in round two', () => {
    const d = diffHost(input({ upstreams: [up(1), up(3)], current: [srv(1), srv(2)] }));
    assert.deepEqual(lines(d.bringIn), [`add server ${BE}/${name(3)} 127.0.0.1:40003`, `enable server ${BE}/${name(3)}`]);
    assert.deepEqual(lines(d.takeOut), [`set server ${BE}/${name(2)} state maint`]);
    assert.deepEqual(d.leaving, [srv(2)]);
    assert.deepEqual(d.changes, ['add', 'maint']);
  });

  test('address and port changes, and a wanted server found in maintenance put back to ready', () => {
    const d = diffHost(input({ upstreams: [up(1, 41_001), up(2, 40_002, '10.0.0.2'), up(3)], current: [srv(1), srv(2), srv(3, { maint: true })] }));
    assert.deepEqual(lines(d.bringIn), [
      `set server ${BE}/${name(1)} addr 127.0.0.1 port 41001`,
      `set server ${BE}/${name(2)} addr 10.0.0.2 port 40002`,
      `set server ${BE}/${name(3)} state ready`,
    ]);
    assert.deepEqual(d.takeOut, []);
    assert.deepEqual(d.changes, ['address', 'address', 'ready']);
    const both = diffHost(input({ upstreams: [up(1, 41_001)], current: [srv(1, { maint: true })] }));
    assert.deepEqual(lines(both.bringIn), [`set server ${BE}/${name(1)} addr 127.0.0.1 port 41001`, `set server ${BE}/${name(1)} state ready`], 'address first, then back in rotation');
  });

  test('host removed (empty set): every server to maintenance, the map entry stays until the backend is empty', () => {
    const d = diffHost(input({ upstreams: [], current: [srv(1), srv(2, { maint: true })] }));
    assert.deepEqual(d.bringIn, []);
    assert.deepEqual(lines(d.takeOut), [`set server ${BE}/${name(1)} state maint`], 'one already in maintenance gets no second command');
    assert.deepEqual(d.leaving, [srv(1), srv(2, { maint: true })]);
    assert.equal(d.maps, false);
    assert.equal(mayRelease(set([]), BE, []), true);
    assert.equal(mayRelease(undefined, BE, ['be_slot_9']), true, 'no set at all: released too');
    assert.equal(mayRelease(set([]), BE, ['be_slot_9', BE]), false, 'not while a server drains in it');
    assert.equal(mayRelease(set([up(1)]), BE, []), false);
    const unmapped = diffHost(input({ upstreams: [], mapped: false }));
    assert.deepEqual(unmapped, { bringIn: [], leaving: [], takeOut: [], maps: false, changes: [] }, 'an empty set never maps a host');
  });

  test('slot reuse: a host put into a slot still holding servers maps only after they are in maintenance', () => {
    const d = diffHost(input({ upstreams: [up(1), up(5)], current: [srv(5), srv(7)], mapped: false }));
    assert.deepEqual(lines(d.bringIn), [`add server ${BE}/${name(1)} 127.0.0.1:40001`, `enable server ${BE}/${name(1)}`]);
    assert.deepEqual(lines(d.takeOut), [`set server ${BE}/${name(7)} state maint`, `add map ${MAP} shop.test ${BE}`]);
    assert.deepEqual(d.changes, ['add', 'maint', 'map']);
  });

  test('a host to map while the map is not known yet is refused before any command', () => {
    assert.throws(
      () => diffHost(input({ upstreams: [up(1)], mapped: false, mapFile: undefined })),
      (err: unknown) => err instanceof LogmeterError && err.code === 'haproxy_no_map',
    );
    assert.equal(diffHost(input({ upstreams: [up(1)], current: [srv(1)], mapFile: undefined })).bringIn.length, 0, 'a mapped host needs no map');
  });

  test('server names: the short container id, the address when there is no usable id; bad arguments refused', () => {
    assert.equal(upstreamServerName(up(7)), name(7));
    assert.equal(upstreamServerName({ container_id: '', address: '10.0.0.1', port: 80 }), 'u-10_0_0_1-80');
    assert.equal(upstreamServerName({ container_id: 'a b', address: '::1', port: 8080 }), 'u-__1-8080');
    assert.throws(() => diffHost(input({ upstreams: [up(1, 0)] })), (err: unknown) => err instanceof LogmeterError && err.code === 'haproxy_bad_argument');
    assert.deepEqual(lines(diffHost(input({ upstreams: [up(1, 40_001, '::1')], mapped: false })).bringIn).slice(0, 1), [`add server ${BE}/${name(1)} [::1]:40001`]);
  });

  test('slot choice: free slots first, then a draining or stray one (read first); full: none', () => {
    const slots = ['be_slot_0', 'be_slot_1', 'be_slot_2', 'be_slot_3'];
    assert.deepEqual(pickSlot(slots, [], [], new Set()), { backend: 'be_slot_0', read: false });
    assert.deepEqual(pickSlot(slots, ['be_slot_0'], ['be_slot_1'], new Set(['be_slot_2'])), { backend: 'be_slot_3', read: false });
    assert.deepEqual(pickSlot(slots, ['be_slot_0', 'be_slot_3'], ['be_slot_2', 'be_slot_2'], new Set(['be_slot_1'])), { backend: 'be_slot_1', read: true }, 'reuse: the first unmapped one');
    assert.equal(pickSlot(slots, slots, [], new Set()), undefined, 'every slot mapped: the backend pool is full');
    assert.equal(pickSlot([], [], [], new Set()), undefined);
    assert.deepEqual(slotBackends(['be_default', 'be_slot_10', 'be_slot_2', 'be_slot_0', 'be_slotx', 'stats']), ['be_slot_0', 'be_slot_2', 'be_slot_10']);
  });

  test('whole reconcile: the first host per slot kept, other entries deleted, the restart marker left alone', () => {
    const entries = new Map([
      ['a.test', 'be_slot_0'],
      ['logmeter:epoch', 'abc'],
      ['b.test', 'be_slot_0'],
      ['c.test', 'be_default'],
      ['d.test', 'be_slot_1'],
    ]);
    const { mapped, stale } = adoptMap(entries, ['be_slot_0', 'be_slot_1'], 'logmeter:epoch');
    assert.deepEqual([...mapped], [
      ['a.test', 'be_slot_0'],
      ['d.test', 'be_slot_1'],
    ]);
    assert.deepEqual(stale, ['b.test', 'c.test']);
  });

  test('orphans: servers of hosts no set asks for and of backends no host is mapped to; retired with one command each', () => {
    const mapped = new Map([
      ['kept.test', 'be_slot_0'],
      ['gone.test', 'be_slot_1'],
    ]);
    const byBackend = new Map<string, ServerState[]>([
      ['be_slot_0', [srv(1, { backend: 'be_slot_0' })]],
      ['be_slot_1', [srv(2, { backend: 'be_slot_1' }), srv(3, { backend: 'be_slot_1', maint: true })]],
      ['be_slot_5', [srv(4, { backend: 'be_slot_5' })]],
    ]);
    const out = orphans(mapped, new Set(['kept.test']), byBackend);
    assert.deepEqual(
      out.map(({ backend, s }) => `${backend}/${s.name}`),
      [`be_slot_1/${name(2)}`, `be_slot_1/${name(3)}`, `be_slot_5/${name(4)}`],
    );
    assert.deepEqual(lines(retireSteps(out)), [`set server be_slot_1/${name(2)} state maint`, `set server be_slot_5/${name(4)} state maint`]);
  });

  test('reaping a retired server: wait for its sessions up to the drain timeout, then cut them; gone means forgotten', () => {
    assert.equal(reapAction(undefined, 0, 1000), 'forget');
    assert.equal(reapAction(0, 0, 1000), 'delete');
    assert.equal(reapAction(2, 999, 1000), 'wait');
    assert.equal(reapAction(2, 1000, 1000), 'shutdown-delete');
    assert.equal(reapAction(1, 5, 0), 'shutdown-delete');
  });

  test('property: after both rounds the servers out of maintenance are exactly the wanted upstreams, at their addresses', () => {
    const upstream = fc.record({ n: fc.integer({ min: 1, max: 6 }), port: fc.integer({ min: 40_000, max: 40_003 }), address: fc.constantFrom('127.0.0.1', '10.0.0.2') });
    const server = fc.record({ n: fc.integer({ min: 1, max: 6 }), port: fc.integer({ min: 40_000, max: 40_003 }), maint: fc.boolean() });
    fc.assert(
      fc.property(fc.uniqueArray(upstream, { selector: (u) => u.n, maxLength: 5 }), fc.uniqueArray(server, { selector: (s) => s.n, maxLength: 5 }), fc.boolean(), (want, have, mapped) => {
        const current = have.map((s) => srv(s.n, { port: s.port, maint: s.maint }));
        const d = diffHost(input({ upstreams: want.map((u) => up(u.n, u.port, u.address)), current, mapped }));
        // A tiny HAProxy: `add server` creates a server in maintenance, as the real one does.
        const model = new Map<string, ServerState>(current.map((s) => [s.name, { ...s }]));
        let mapEntry = mapped;
        for (const line of lines([...d.bringIn, ...d.takeOut])) {
          let m: RegExpExecArray | null;
          if ((m = /^add server be_slot_3\/(\S+) (\S+):(\d+)$/.exec(line))) {
            assert.ok(!model.has(m[1]!), `${line}: exists`);
            model.set(m[1]!, { ...srv(0), name: m[1]!, address: m[2]!, port: Number(m[3]), adminState: 1 });
          } else if ((m = /^enable server be_slot_3\/(\S+)$/.exec(line))) model.get(m[1]!)!.adminState = 0;
          else if ((m = /^set server be_slot_3\/(\S+) state (ready|maint)$/.exec(line))) model.get(m[1]!)!.adminState = m[2] === 'ready' ? 0 : 1;
          else if ((m = /^set server be_slot_3\/(\S+) addr (\S+) port (\d+)$/.exec(line))) Object.assign(model.get(m[1]!)!, { address: m[2]!, port: Number(m[3]) });
          else if (line === `add map ${MAP} shop.test ${BE}`) {
            assert.ok(!mapEntry, 'mapped twice');
            mapEntry = true;
          } else assert.fail(`unexpected command ${line}`);
        }
        const live = [...model.values()].filter((s) => s.adminState === 0).map((s) => `${s.name}@${s.address}:${s.port}`);
        assert.deepEqual(live.sort(), want.map((u) => `${name(u.n)}@${u.address}:${u.port}`).sort());
        assert.equal(mapEntry, mapped || want.length > 0);
        assert.deepEqual(d.leaving.map((s) => s.name).sort(), current.filter((s) => !want.some((u) => name(u.n) === s.name)).map((s) => s.name).sort());
        assert.equal(d.takeOut.length > 0, d.leaving.some((s) => s.adminState === 0) || (d.maps && d.leaving.length > 0));
      }),
      { numRuns: 300 },
    );
  });
});
