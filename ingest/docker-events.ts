/**
 * Docker's events stream, followed for as long as the collector runs: reopened from the
 * newest event handled when it breaks (jittered backoff up to 5 s, a log line and a count
 * each time), one JSON event per line, each handed to `onEvent` in order. Opening the
 * stream has a deadline (docker-calls.ts); diagnose() says what it is doing and since when.
 */
import type Docker from 'dockerode';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { eventsSince } from './attach.js';
import type { DockerEvent } from './lifecycle.js';
import { withDeadline } from './docker-calls.js';

/** Asking Docker for the stream, reading it (`handling` while an event is handled), waiting to reopen it, or stopped. */
export type EventsPhase = 'attaching' | 'reading' | 'handling' | 'backing off' | 'ended';

type EventStream = NodeJS.ReadableStream & { destroy(): void };

export interface DockerEventsOptions {
  docker: Docker;
  log: Logger;
  /** Newest event time handled (ns; 0 for none): where a (re)opened stream starts. */
  since: () => number;
  onEvent: (e: DockerEvent) => Promise<void>;
  /** Called when the stream fails (before it is reopened). */
  onError: () => void;
  /** Longest wait for Docker to start answering the events request (ms). */
  timeoutMs: number;
}

export class DockerEvents {
  private stream: EventStream | undefined;
  private stopping = false;
  private done: Promise<void> | undefined;
  private phase: EventsPhase = 'ended';
  private phaseSince = Date.now();
  private handled = 0;
  private wake: (() => void) | undefined;
  /** Aborted by stop(): an events request Docker has not answered yet is given up at once. */
  private readonly stopSignal = new AbortController();

  constructor(private readonly o: DockerEventsOptions) {}

  start(): void {
    this.done = this.watch();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stream?.destroy();
    this.wake?.();
    this.stopSignal.abort();
    await this.done;
    this.setPhase('ended');
  }

  /** The phase and since when (epoch ms), and how many events were handled. */
  diagnose(): { phase: EventsPhase; since: number; events: number } {
    return { phase: this.phase, since: this.phaseSince, events: this.handled };
  }

  private setPhase(phase: EventsPhase): void {
    if (phase === this.phase) return;
    this.phase = phase;
    this.phaseSince = Date.now();
  }

  private async watch(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        const since = eventsSince(this.o.since(), Date.now());
        this.setPhase('attaching');
        const stream = (await withDeadline(
          'the events request',
          this.o.timeoutMs,
          (abortSignal) => this.o.docker.getEvents({ since: since as unknown as number, filters: { type: ['container', 'network'] }, abortSignal }),
          this.stopSignal.signal,
        )) as unknown as EventStream;
        if (this.stopping) {
          stream.destroy();
          break;
        }
        this.stream = stream;
        this.setPhase('reading');
        attempt = 0;
        let buf = '';
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          buf += chunk.toString('utf8');
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const text = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (text) await this.handle(text);
          }
        }
      } catch (err) {
        if (this.stopping) break;
        this.o.onError();
        this.o.log.warn({ err: errorMessage(err) }, 'docker events stream failed; reconnecting');
      }
      if (this.stopping) break;
      this.setPhase('backing off');
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(5000, 200 * 2 ** attempt++));
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.wake = undefined;
    }
  }

  private async handle(text: string): Promise<void> {
    this.setPhase('handling');
    try {
      await this.o.onEvent(JSON.parse(text) as DockerEvent);
    } catch (err) {
      this.o.log.error({ err: errorMessage(err), event: text.slice(0, 300) }, 'docker event not handled');
    }
    this.handled++;
    this.setPhase('reading');
  }
}
