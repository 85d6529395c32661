/**
 * HAProxy (Debian's haproxy) is installed by the stack for the load-balancer routes;
 * the route applier starts its own instance from a generated config.
 */
import { aptInstall, run, which } from './common.js';
import type { StackService } from './service.js';

export function haproxyService(): StackService {
  const version = (): string | undefined => {
    const bin = which('haproxy');
    if (!bin) return undefined;
    return /version (\S+)/.exec(run(bin, ['-v']))?.[1];
  };
  return {
    name: 'haproxy',
    status() {
      const v = version();
      return Promise.resolve({ name: 'haproxy', state: v ? 'stopped' : 'missing', managed: false, where: which('haproxy') ?? '-', detail: v ? `installed ${v}; started by the route applier` : undefined });
    },
    async up(ctx) {
      // kcat is the benchmarks' raw-producer baseline; chromium is the browser of the panel's tests (test/panel.test.ts).
      aptInstall(ctx, ['haproxy', 'kcat', 'chromium']);
      return this.status(ctx);
    },
    down: () => Promise.resolve('haproxy: nothing to stop (run by the route applier)'),
  };
}
