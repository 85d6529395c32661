/**
 * Publishing and logging of the scaler's actions (their content is report.ts'): each is
 * logged, counted and published on the lifecycle topic. A refusal identical to the last
 * one reported for the app within {@link REFUSAL_REPEAT_MS} is counted but published and
 * logged (info) once; a state refusal (not opted in, removed by the tenant) once per
 * state, for as long as {@link STATE_REFUSAL_REPEAT_MS}. Repeats are debug lines only.
 */
import type { EventBus } from '../../lib/bus/bus.js';
import type { Logger } from '../../lib/logger.js';
import type { ContainerFacts } from '../../lib/container.js';
import { STATE_REFUSALS, actionEvent, refusalReport, type Refusal, type ScalerAction } from './report.js';
import type { ScaleJobData, ScaleJobResult } from './signal.js';
import { appKey, type ScalerState } from './state.js';
import type { ScalerMetrics } from './telemetry.js';

/** A refusal identical to the last one reported within this is not published again. */
export const REFUSAL_REPEAT_MS = 60_000;
/** A state refusal is reported again after this even when the state held (a day: the operation log shows it daily at most). */
export const STATE_REFUSAL_REPEAT_MS = 24 * 3600_000;

export class Reporter {
  constructor(
    private readonly bus: EventBus,
    private readonly state: ScalerState,
    private readonly metrics: ScalerMetrics,
    private readonly log: Logger,
    private readonly labelPrefix: string,
    private readonly clock: () => Date,
  ) {}

  /** Logs the action and publishes it as a lifecycle operation; resolves once Kafka acknowledged it. */
  async emit(action: ScalerAction, data: ScaleJobData, jobId: string, facts: ContainerFacts | undefined, range: { from: number; to: number }, message: string, extra: Record<string, string> = {}): Promise<void> {
    const event = actionEvent({ action, data, jobId, facts, range, message, extra, node: this.bus.config.node, labelPrefix: this.labelPrefix, now: this.clock().getTime() });
    // Refusals carry no container: keyed by app so one app's stay in order.
    await this.bus.publish('lifecycle', [{ event, ...(facts ? {} : { key: `${data.tenant}/${data.app}` }) }]);
    this.metrics.actions.inc({ action });
    this.log.info({ tenant: data.tenant, app: data.app, action, container: facts?.name, ...event.attributes }, message);
  }

  /** Reports a refusal (once per minute for the same one; always logged and counted). */
  async refuse(data: ScaleJobData, jobId: string, r: Refusal): Promise<ScaleJobResult> {
    this.metrics.refusals.inc({ reason: r.reason });
    const { message, extra, signature } = refusalReport(data.app, r);
    const repeatMs = STATE_REFUSALS.has(r.reason) ? STATE_REFUSAL_REPEAT_MS : REFUSAL_REPEAT_MS;
    if (await this.state.isNewRefusal(appKey(data.tenant, data.app), signature, repeatMs)) {
      await this.emit('scale_refused', data, jobId, undefined, { from: r.from, to: r.to }, message, extra);
    } else {
      this.log.debug({ tenant: data.tenant, app: data.app, job: jobId, refusal: r.reason }, `${message} (reported already)`);
    }
    return { action: 'scale_refused', from: r.from, to: r.to, containers: [] };
  }
}
