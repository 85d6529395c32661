/**
 * The images behind the `Dockerfile`, built here without a registry:
 *
 * 1. `logmeter/bookworm-node:<hash>`: Debian 12 from `debootstrap --variant=minbase`
 *    (Debian packages only, tarball cached under `.state/images/`), with HAProxy and
 *    busybox-static from Debian (the routes processor builds its load-balancer image from
 *    them, processors/routes/haproxy.ts) and this host's Node and npm copied in. Debian's
 *    own `nodejs` is 18 and logmeter needs ≥ 20.19; the host's node is the one the tests
 *    run on (NodeSource's bookworm build, linked only against glibc and libstdc++, which
 *    minbase has), so the image runs exactly the tested runtime. Docker `import`ed.
 * 2. `logmeter/app:<hash>`: `docker build --build-arg BASE=<1>` of the project's
 *    Dockerfile. The hash covers the Dockerfile, .dockerignore and every file the build
 *    context holds, so a rerun with nothing changed skips the build; when only sources
 *    changed Docker's layer cache keeps the `npm ci` layer.
 *
 * The public path (`docker compose up --build` with a registry) starts FROM
 * node:20-bookworm-slim instead and installs haproxy and busybox-static with apt-get;
 * that step is the only part of the Dockerfile these images do not run.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Docker } from '../docker.js';
import { hasImage, importRootfs } from '../docker-image.js';
import { LogmeterError } from '../errors.js';
import { aptInstall, ensureDir, PROJECT_ROOT, run, type StackContext } from './common.js';

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
/** What the image needs beyond minbase: the LB binaries, and CA roots for TLS to Kafka/ClickHouse. */
const INCLUDE = ['haproxy', 'busybox-static', 'ca-certificates'];

const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** `.state/images/bookworm-minbase-<hash>.tar`, built with debootstrap when missing. */
export function debianRootfsTarball(ctx: StackContext): string {
  const key = sha(JSON.stringify({ SUITE, MIRROR, INCLUDE })).slice(0, 12);
  const dir = ensureDir(ctx.stateDir, 'images');
  const tarball = path.join(dir, `${SUITE}-minbase-${key}.tar`);
  if (existsSync(tarball)) return tarball;
  aptInstall(ctx, ['debootstrap']);
  const root = mkdtempSync(path.join(dir, 'rootfs-'));
  try {
    ctx.logger.info({ suite: SUITE, include: INCLUDE }, 'debootstrap (a few minutes, once)');
    run('debootstrap', ['--variant=minbase', `--include=${INCLUDE.join(',')}`, SUITE, root, MIRROR], { what: 'debootstrap', maxBuffer: 256 * 1024 * 1024 });
    rmSync(path.join(root, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true });
    mkdirSync(path.join(root, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true });
    run('tar', ['-C', root, '--numeric-owner', '--exclude=./proc/*', '--exclude=./sys/*', '--exclude=./dev/*', '-cf', `${tarball}.tmp`, '.'], { what: 'tar of the rootfs' });
    renameSync(`${tarball}.tmp`, tarball);
    return tarball;
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(`${tarball}.tmp`, { force: true });
  }
}

/** The host's node and npm: the binary, its version and npm's directory. */
function hostNode(): { bin: string; version: string; npm: string } {
  const bin = process.execPath;
  const npm = path.resolve(path.dirname(bin), '..', 'lib', 'node_modules', 'npm');
  if (!existsSync(path.join(npm, 'bin', 'npm-cli.js'))) throw new LogmeterError('missing_packages', `npm not found next to ${bin} (expected ${npm})`);
  return { bin, version: process.version, npm };
}

/** `logmeter/bookworm-node:<hash>`: the rootfs tarball plus the host's node and npm. */
export async function buildNodeBaseImage(docker: Docker, ctx: StackContext): Promise<string> {
  const tarball = debianRootfsTarball(ctx);
  const node = hostNode();
  const caBundle = existsSync(HOST_CA_BUNDLE) ? readFileSync(HOST_CA_BUNDLE) : undefined;
  const ref = `logmeter/bookworm-node:${sha(`${path.basename(tarball)} ${node.version} ${statSync(node.bin).size} ${caBundle ? sha(caBundle) : '-'}`).slice(0, 12)}`;
  if (await hasImage(docker, ref)) return ref;
  const root = mkdtempSync(path.join(ctx.stateDir, 'images', 'node-base-'));
  try {
    run('tar', ['-C', root, '--numeric-owner', '-xf', tarball], { what: 'untar the rootfs' });
    cpSync(node.bin, path.join(root, 'usr', 'bin', 'node'));
    cpSync(node.npm, path.join(root, 'usr', 'lib', 'node_modules', 'npm'), { recursive: true, verbatimSymlinks: true });
    // The host's trust store: a registry the host reaches through a TLS-intercepting proxy
    // is then reached from `npm ci` in the build too.
    if (caBundle) writeFileSync(path.join(root, HOST_CA_BUNDLE.slice(1)), caBundle);
    rmSync(path.join(root, 'usr', 'bin', 'npm'), { force: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', path.join(root, 'usr', 'bin', 'npm'));
    await importRootfs(docker, root, ref, [
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'CMD ["/bin/bash"]',
      ...(caBundle ? [`ENV NODE_EXTRA_CA_CERTS=${HOST_CA_BUNDLE}`] : []),
      `LABEL logmeter.node-version=${node.version}`,
    ]);
    ctx.logger.info({ image: ref, node: node.version }, 'node base image imported');
    return ref;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The paths .dockerignore lets into the build context (it is an allow-list: `*`, then `!path` lines). */
export function buildContextPaths(root: string = PROJECT_ROOT): string[] {
  const lines = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  if (lines[0] !== '*') throw new LogmeterError('invalid_config', '.dockerignore must start with `*` (an allow-list)');
  const denied = lines.filter((l) => l && !l.startsWith('#') && !l.startsWith('!') && l !== '*');
  if (denied.length > 0) throw new LogmeterError('invalid_config', `.dockerignore: only \`!path\` lines after \`*\` (found ${denied.join(', ')})`);
  return lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/^\/|\/$/g, ''));
}

function filesUnder(p: string): string[] {
  if (!existsSync(p)) return [];
  if (!statSync(p).isDirectory()) return [p];
  return readdirSync(p)
    .sort()
    .flatMap((e) => filesUnder(path.join(p, e)));
}

/** Hash of what `docker build` sees: Dockerfile, .dockerignore, and every file in the context. */
export function buildContextHash(root: string = PROJECT_ROOT, extra = ''): string {
  const h = createHash('sha256').update(extra);
  for (const f of ['Dockerfile', '.dockerignore', ...buildContextPaths(root).flatMap((p) => filesUnder(path.join(root, p)).map((abs) => path.relative(root, abs)))]) {
    h.update(`${f}\0`).update(readFileSync(path.join(root, f))).update('\0');
  }
  return h.digest('hex');
}

/**
 * `logmeter/app:<hash>` from the Dockerfile over the local base; built only when that
 * tag is missing. The legacy builder (DOCKER_BUILDKIT=0) because the Debian dockerd
 * has no buildx; host network so `npm ci` reaches the registry.
 */
export async function buildAppImage(docker: Docker, ctx: StackContext, root: string = PROJECT_ROOT): Promise<{ ref: string; base: string; built: boolean; seconds: number }> {
  const started = Date.now();
  const base = await buildNodeBaseImage(docker, ctx);
  const ref = `logmeter/app:${buildContextHash(root, base).slice(0, 12)}`;
  if (await hasImage(docker, ref)) return { ref, base, built: false, seconds: (Date.now() - started) / 1000 };
  ctx.logger.info({ image: ref, base }, 'docker build');
  run('docker', ['build', '--network', 'host', '--build-arg', `BASE=${base}`, '-t', ref, root], {
    what: `docker build ${ref}`,
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  // Older tags are not removed: another checkout's test may be about to run its own on this
  // dockerd. They share every layer but the last (the sources, a few MiB).
  return { ref, base, built: true, seconds: (Date.now() - started) / 1000 };
}
