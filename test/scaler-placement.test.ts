/**
 * The scaler's placement over several nodes (processors/scaler/nodes.ts), rule by rule,
 * without services; and what the job and refusal rules make of several nodes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type Docker from 'dockerode';
import { addCensus, clusterCensus, handOnUp, maxReplicas, newestReplica, newestTemplate, placeDown, placeUp, removeHere, withDeclared, type AppOnNode, type NodeReport } from '../processors/scaler/nodes.js';
import { templateOf } from '../processors/scaler/docker.js';
import { planScale, type PlanInput } from '../processors/scaler/plan.js';
import { refusalReport } from '../processors/scaler/report.js';
import { nodeQueueName } from '../processors/scaler/cluster.js';

const SHOP = 'acme|shop';
const BLOG = 'acme|blog';

function app(over: Partial<AppOnNode> = {}): AppOnNode {
  return { tenant: 'acme', app: 'shop', running: 1, own: 1, optedIn: false, replicas: 0, newestReplicaNs: '', templateNs: '100', template: { image: 'shop:1' }, ...over };
}
function node(name: string, running: number, apps: Record<string, AppOnNode> = {}, cap = 4): NodeReport {
  return { node: name, running, cap, free: Math.max(0, cap - running), at: 0, apps };
}

test('rule 1: an app is counted over every node; opted in when an own container on any node is', () => {
  const reports = [node('a', 2, { [SHOP]: app({ running: 2, own: 1, replicas: 1, newestReplicaNs: '5' }) }), node('b', 3, { [SHOP]: app({ running: 1, own: 0, replicas: 1, newestReplicaNs: '7' }), [BLOG]: app({ app: 'blog', running: 2, own: 2, optedIn: true }) })];
  assert.deepEqual(clusterCensus(reports, SHOP), { current: 3, own: 1, labelledOptIn: false });
  assert.deepEqual(clusterCensus(reports, BLOG), { current: 2, own: 2, labelledOptIn: true });
  assert.deepEqual(clusterCensus(reports, 'acme|none'), { current: 0, own: 0, labelledOptIn: false });
  assert.deepEqual(addCensus({ current: 1, own: 1, labelledOptIn: false }, { current: 2, own: 0, labelledOptIn: true }), { current: 3, own: 1, labelledOptIn: true });
});

test('rule 2: the most replicas are the cap times the nodes, and the clamp uses it while each node keeps its cap', () => {
  assert.equal(maxReplicas(2, 4), 8);
  assert.equal(maxReplicas(0, 4), 4, 'the scaler itself is a node');
  const base: PlanInput = { current: 1, own: 1, requested: 6, nodeContainers: 1, maxContainersPerNode: 4, cooldownMs: { up: 0, down: 0 }, lastChange: undefined, now: 0, jobId: 'j' };
  assert.deepEqual(planScale(base), { kind: 'up', from: 1, to: 4, add: 3, target: 4, cappedAt: undefined }, 'one node: the target is the cap');
  assert.deepEqual(planScale({ ...base, maxReplicas: 8 }), { kind: 'up', from: 1, to: 4, add: 3, target: 6, cappedAt: 4 }, 'two nodes: 6 wanted, 3 fit here');
  assert.deepEqual(planScale({ ...base, requested: 20, maxReplicas: 8 }), { kind: 'up', from: 1, to: 4, add: 3, target: 8, cappedAt: 4 });
});

test('rule 3: growth goes to the node with the most free places, ties by name; with none free still to one (it reports the refusal)', () => {
  assert.equal(placeUp([node('a', 1), node('b', 0), node('c', 2)]), 'b');
  assert.equal(placeUp([node('b', 1), node('a', 1)]), 'a', 'a tie: the first by name, whichever scaler decides');
  assert.equal(placeUp([node('b', 4), node('a', 5)]), 'a', 'no free place: still a node (free 0 both; by name)');
  assert.equal(placeUp([]), undefined);
});

test('rule 4: shrinking goes to the node of the newest scaler replica', () => {
  const reports = [node('a', 2, { [SHOP]: app({ running: 2, replicas: 1, newestReplicaNs: '1000000000000000005' }) }), node('b', 2, { [SHOP]: app({ running: 2, own: 0, replicas: 2, newestReplicaNs: '1000000000000000007' }) }), node('c', 1, { [BLOG]: app() })];
  assert.equal(placeDown(reports, SHOP), 'b');
  assert.deepEqual(newestReplica(reports, SHOP), { node: 'b', ns: 1000000000000000007n }, 'nanoseconds compared exactly (beyond 2^53)');
  assert.equal(placeDown(reports, BLOG), undefined, 'no scaler replica of blog anywhere');
});

test('rule 5: a node removes its replicas newer than every other node\'s newest, at most what is asked', () => {
  assert.equal(removeHere([9n, 7n, 3n], 5n, 3), 2, '9 and 7 are newer than the other node\'s 5; 3 is not');
  assert.equal(removeHere([9n, 7n, 3n], undefined, 3), 3, 'no other replica: all that is asked');
  assert.equal(removeHere([9n, 7n, 3n], undefined, 1), 1);
  assert.equal(removeHere([4n], 5n, 2), 0, 'the newest is elsewhere: nothing here');
  assert.equal(removeHere([], undefined, 2), 0);
});

test('rule 6: the rest of a growth goes to the unvisited node with the most free places; none free: undefined (refused)', () => {
  const reports = [node('a', 4), node('b', 2), node('c', 3)];
  assert.equal(handOnUp(reports, ['a']), 'b');
  assert.equal(handOnUp(reports, ['a', 'b']), 'c');
  assert.equal(handOnUp(reports, ['a', 'b', 'c']), undefined);
  assert.equal(handOnUp([node('a', 4), node('b', 4)], ['a']), undefined, 'b is full');
});

test('rule 7: the newest reported template, the declared one on top (env and labels merged)', () => {
  const reports = [node('a', 1, { [SHOP]: app({ templateNs: '5', template: { image: 'shop:1' } }) }), node('b', 1, { [SHOP]: app({ templateNs: '9', template: { image: 'shop:2', cmd: ['run'], env: { A: '1', B: '2' }, labels: { x: '1' } } }) })];
  const reported = newestTemplate(reports, SHOP);
  assert.equal(reported?.image, 'shop:2');
  assert.equal(newestTemplate(reports, BLOG), undefined);
  assert.deepEqual(withDeclared(reported, { image: 'shop:3', env: { B: 'two' }, labels: { y: '2' } }), { image: 'shop:3', cmd: ['run'], env: { A: '1', B: 'two' }, labels: { x: '1', y: '2' } });
  assert.equal(withDeclared(undefined, { image: 'd' })?.image, 'd');
  assert.equal(withDeclared(reported, undefined), reported);
});

test('a running container as a template: image, command, env, labels, published ports, limits, init; no networks', () => {
  const info = {
    Config: { Image: 'shop:1', Cmd: ['sh', '-c', 'echo hi'], Entrypoint: null, Env: ['A=1', 'URL=http://x/?a=b'], Labels: { 'lm.tenant': 'acme', 'lm.app': 'shop' } },
    HostConfig: { PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '32768' }], '53/udp': [{ HostIp: '', HostPort: '' }] }, Memory: 64 << 20, NanoCpus: 0, Init: true, NetworkMode: 'front' },
  } as unknown as Docker.ContainerInspectInfo;
  assert.deepEqual(templateOf(info), {
    image: 'shop:1',
    cmd: ['sh', '-c', 'echo hi'],
    env: { A: '1', URL: 'http://x/?a=b' },
    labels: { 'lm.tenant': 'acme', 'lm.app': 'shop' },
    publish: [
      { containerPort: 80, protocol: 'tcp', hostIp: '127.0.0.1' },
      { containerPort: 53, protocol: 'udp', hostIp: '127.0.0.1' },
    ],
    memoryBytes: 64 << 20,
    init: true,
  });
});

test('a cap refusal over several nodes says so; the queue of a node is named after it', () => {
  assert.equal(refusalReport('shop', { kind: 'refused', reason: 'cap', from: 3, to: 4, nodeContainers: 2, cap: 2, nodes: 2 }).message, 'scale up shop 3 → 4 refused: node cap of 2 tenant containers reached on each of 2 nodes');
  assert.equal(refusalReport('shop', { kind: 'refused', reason: 'cap', from: 3, to: 4, nodeContainers: 2, cap: 2, nodes: 2 }).signature, 'cap|3|4', 'the same refusal repeated is reported once');
  assert.equal(nodeQueueName('t1.scaler', 'node-b'), 't1.scaler.node-b');
  assert.equal(nodeQueueName('t1.scaler', 'rack:3'), 't1.scaler.rack%3A3', 'no colon in a bullmq name');
});
