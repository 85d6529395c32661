/**
 * A local service of the stack. A service `up` started has a pid file under the
 * state directory; `down` stops exactly those, never one it found already running.
 */
import type { StackContext } from './common.js';

export interface ServiceStatus {
  name: string;
  /** running: answers; stopped: installed, not running; missing: not installed. */
  state: 'running' | 'stopped' | 'missing';
  /** True when this stack started it (and `down` will stop it). */
  managed: boolean;
  where: string;
  pid?: number | undefined;
  since?: Date | undefined;
  detail?: string | undefined;
}

export interface StackService {
  readonly name: string;
  up(ctx: StackContext): Promise<ServiceStatus>;
  /** Stops the service if this stack started it; returns what it did. */
  down(ctx: StackContext): Promise<string>;
  status(ctx: StackContext): Promise<ServiceStatus>;
}
