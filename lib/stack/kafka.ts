/**
 * Apache Kafka, one KRaft node (broker + controller), run from the official jars on
 * Maven Central. The version is pinned in `stack/kafka/pom.xml`; Maven copies the
 * runtime classpath into the state directory (outside git) once per version.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LogmeterError } from '../errors.js';
import { splitHostPort } from '../config.js';
import {
  PROJECT_ROOT,
  aptInstall,
  ensureDir,
  mtime,
  ownPid,
  pidAlive,
  run,
  startDaemon,
  stopPid,
  tcpOpen,
  waitFor,
  which,
  writePid,
  type StackContext,
} from './common.js';
import type { ServiceStatus, StackService } from './service.js';

const KAFKA_DIR = path.join(PROJECT_ROOT, 'stack', 'kafka');
const POM = path.join(KAFKA_DIR, 'pom.xml');

/** The Kafka version pinned in the pom. */
export function kafkaVersion(): string {
  const v = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(POM, 'utf8'))?.[1];
  if (!v) throw new LogmeterError('pom_invalid', `${POM} pins no kafka.version`);
  return v;
}

export function kafkaService(broker: string): StackService {
  const { host, port } = splitHostPort(broker);
  const controllerPort = port + 1;
  const paths = (ctx: StackContext) => {
    const dir = path.join(ctx.stateDir, 'kafka');
    return {
      dir,
      libs: path.join(dir, `libs-${kafkaVersion()}`),
      data: path.join(dir, 'data'),
      props: path.join(dir, 'server.properties'),
      pid: path.join(dir, 'kafka.pid'),
      stdout: path.join(dir, 'stdout.log'),
      log: path.join(dir, 'server.log'),
    };
  };
  const status = async (ctx: StackContext): Promise<ServiceStatus> => {
    const p = paths(ctx);
    const pid = ownPid(p.pid, p.props);
    const managed = pid !== undefined;
    if (await tcpOpen(host, port)) {
      return { name: 'kafka', state: 'running', managed, where: broker, pid: managed ? pid : undefined, since: managed ? mtime(p.pid) : undefined, detail: managed ? `Kafka ${kafkaVersion()} KRaft, log ${p.log}` : 'reused: not started by logmeter' };
    }
    return { name: 'kafka', state: existsSync(p.libs) ? 'stopped' : 'missing', managed: false, where: broker, detail: `Kafka ${kafkaVersion()}` };
  };

  const javaOpts = (p: ReturnType<typeof paths>) => [
    '-Xms256m',
    '-Xmx1g',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${path.join(KAFKA_DIR, 'log4j2.xml')}`,
    `-Dkafka.logs.dir=${p.dir}`,
    '-cp',
    `${p.libs}/*`,
  ];

  return {
    name: 'kafka',
    status,
    async up(ctx) {
      const now = await status(ctx);
      if (now.state === 'running') return now;
      if (!['127.0.0.1', 'localhost'].includes(host)) throw new LogmeterError('kafka_unreachable', `Kafka at ${broker} does not answer, and logmeter only starts a local one`);
      const p = paths(ctx);
      ensureDir(p.dir);
      if (!which('java')) aptInstall(ctx, ['openjdk-17-jre-headless']);
      if (!existsSync(p.libs) || readdirSync(p.libs).length === 0) {
        if (!which('mvn')) aptInstall(ctx, ['maven']);
        ctx.logger.info({ version: kafkaVersion(), into: p.libs }, 'fetching Kafka jars from Maven Central');
        run('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${p.libs}`, '-DincludeScope=runtime'], { what: 'mvn dependency:copy-dependencies (Kafka jars)' });
      }
      const template = readFileSync(path.join(KAFKA_DIR, 'server.properties.template'), 'utf8');
      writeFileSync(
        p.props,
        template.replaceAll('${DATA_DIR}', p.data).replaceAll('${PORT}', String(port)).replaceAll('${CONTROLLER_PORT}', String(controllerPort)),
      );
      if (!existsSync(path.join(p.data, 'kraft-logs', 'meta.properties'))) {
        let clusterId: string;
        do clusterId = randomBytes(16).toString('base64url');
        while (clusterId.startsWith('-'));
        run('java', [...javaOpts(p), 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', p.props], { what: 'kafka storage format' });
      }
      const d = startDaemon('java', [...javaOpts(p), 'kafka.Kafka', p.props], { log: p.stdout, cwd: p.dir });
      writePid(p.pid, d.pid);
      await waitFor(`Kafka on ${broker}`, () => tcpOpen(host, port), { timeoutMs: 90_000, log: p.log, alive: () => pidAlive(d.pid) });
      ctx.logger.info({ where: broker, version: kafkaVersion(), pid: d.pid }, 'kafka started');
      return status(ctx);
    },
    async down(ctx) {
      const p = paths(ctx);
      const pid = ownPid(p.pid, p.props);
      if (!pid) return 'kafka: not started by logmeter, left alone';
      await stopPid(pid, 30_000);
      return `kafka: stopped (pid ${pid})`;
    },
  };
}
