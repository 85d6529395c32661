import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../lib/config.js';
import { loadConfig } from '../app/config.js';
import { cli } from './helpers/env.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'logmeter-config-'));

test('defaults match the documented ones', () => {
  const c = loadConfig({ env: {} });
  assert.deepEqual(c.kafka.brokers, ['127.0.0.1:9092']);
  assert.equal(c.kafka.topicPrefix, 'logmeter.');
  assert.equal(c.redis.url, 'redis://127.0.0.1:6379');
  assert.equal(c.clickhouse.url, undefined);
  assert.equal(c.docker.host, 'unix:///var/run/docker.sock');
  assert.equal(c.dataDir, './data');
  assert.equal(c.schemaRegistry.url, undefined);
  assert.equal(c.http.listen, '127.0.0.1:8780');
});

test('environment variables set their keys', () => {
  const c = loadConfig({
    env: {
      KAFKA_BROKERS: 'a:1, b:2',
      REDIS_URL: 'redis://r:7000',
      CLICKHOUSE_URL: 'http://ch:8123',
      DOCKER_HOST: 'tcp://d:2375',
      LOGMETER_DATA_DIR: '/srv/lm',
      SCHEMA_REGISTRY_URL: 'http://reg:8081',
      LOGMETER_HTTP: '0.0.0.0:9000',
      LOGMETER_TOPIC_PREFIX: 'prod.',
    },
  });
  assert.deepEqual(c.kafka.brokers, ['a:1', 'b:2']);
  assert.equal(c.redis.url, 'redis://r:7000');
  assert.equal(c.clickhouse.url, 'http://ch:8123');
  assert.equal(c.docker.host, 'tcp://d:2375');
  assert.equal(c.dataDir, '/srv/lm');
  assert.equal(c.schemaRegistry.url, 'http://reg:8081');
  assert.equal(c.http.listen, '0.0.0.0:9000');
  assert.equal(c.kafka.topicPrefix, 'prod.');
});

test('every bad variable is reported at once, by name', () => {
  let err: unknown;
  try {
    loadConfig({ env: { KAFKA_BROKERS: 'no-port', REDIS_URL: 'http://x', LOGMETER_HTTP: 'localhost:99999', CLICKHOUSE_URL: 'not a url', DOCKER_HOST: 'ftp://x', LOGMETER_TOPIC_PREFIX: 'bad prefix!' } });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  const names = err.problems.map((p) => p.split(':')[0]);
  assert.deepEqual(new Set(names), new Set(['KAFKA_BROKERS', 'REDIS_URL', 'LOGMETER_HTTP', 'CLICKHOUSE_URL', 'DOCKER_HOST', 'LOGMETER_TOPIC_PREFIX']));
  assert.equal(err.problems.length, 6);
});

test('config file: YAML read, env wins, unknown keys refused with their path', () => {
  const good = path.join(tmp, 'good.yaml');
  writeFileSync(good, 'kafka:\n  brokers: ["k1:9092"]\n  topicPrefix: "stage."\nhttp:\n  listen: 127.0.0.1:9999\n');
  const c = loadConfig({ env: { LOGMETER_TOPIC_PREFIX: 'env.' }, file: good });
  assert.deepEqual(c.kafka.brokers, ['k1:9092']);
  assert.equal(c.kafka.topicPrefix, 'env.');
  assert.equal(c.http.listen, '127.0.0.1:9999');

  const bad = path.join(tmp, 'bad.yaml');
  writeFileSync(bad, 'kafka:\n  brokerz: ["k1:9092"]\nredis:\n  url: 42\ncolour: blue\n');
  assert.throws(
    () => loadConfig({ env: {}, file: bad }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const text = e.problems.join('\n');
      assert.match(text, /bad\.yaml: kafka: Unrecognized key: "brokerz"/);
      assert.match(text, /bad\.yaml: redis\.url/);
      assert.match(text, /bad\.yaml: \(top level\): Unrecognized key: "colour"/);
      assert.equal(e.problems.length, 3);
      return true;
    },
  );
});

test('unparseable config file is a clear error', () => {
  const f = path.join(tmp, 'broken.yaml');
  writeFileSync(f, 'kafka: [unclosed\n');
  assert.throws(() => loadConfig({ env: {}, file: f }), /broken\.yaml: /);
  assert.throws(() => loadConfig({ env: {}, file: path.join(tmp, 'missing.yaml') }), /missing\.yaml: ENOENT/);
});

test('the CLI exits 2 and lists every bad variable', async () => {
  const r = await cli(['sql', 'SELECT 1'], { ...process.env, KAFKA_BROKERS: 'nope', REDIS_URL: 'x', LOGMETER_HTTP: 'bad' });
  assert.equal(r.code, 2);
  for (const name of ['KAFKA_BROKERS', 'REDIS_URL', 'LOGMETER_HTTP']) assert.match(r.stderr, new RegExp(`- ${name}: `));
});

test('collector.thread (LOGMETER_COLLECTOR_THREAD): on by default; true/false, 1/0, yes/no; anything else refused by name', () => {
  assert.equal(loadConfig({ env: {} }).collector.thread, true);
  for (const [raw, want] of [['false', false], ['0', false], ['No', false], ['true', true], ['1', true], ['yes', true]] as const) {
    assert.equal(loadConfig({ env: { LOGMETER_COLLECTOR_THREAD: raw } }).collector.thread, want, raw);
  }
  const file = path.join(tmp, 'thread.yaml');
  writeFileSync(file, 'collector:\n  thread: false\n');
  assert.equal(loadConfig({ env: {}, file }).collector.thread, false);
  assert.throws(() => loadConfig({ env: { LOGMETER_COLLECTOR_THREAD: 'maybe' } }), (e: unknown) => e instanceof ConfigError && /LOGMETER_COLLECTOR_THREAD: .*expected boolean.*"maybe"/.test(e.message));
});
