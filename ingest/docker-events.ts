/**
 * Docker's events stream, followed for as long as the collector runs: reopened from the
 * newest event handled when it breaks (jittered backoff up to 5 s, a log line and a count
 * each time), one JSON event per line, each handed to `onEvent` in order.
 */
import type Docker from 'dockerode';
import { errorMessage } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { eventsSince } from './attach.js';
import type { DockerEvent } from './lifecycle.js';

type EventStream = NodeJS.ReadableStream & { destroy(): void };

export interface DockerEventsOptions {
  docker: Docker;
  log: Logger;
  /** Newest event time handled (ns; 0 for none): where a (re)opened stream starts. */
  since: () => number;
  onEvent: (e: DockerEvent) => Promise<void>;
  /** Called when the stream fails (before it is reopened). */
  onError: () => void;
}

export class DockerEvents {
  private stream: EventStream | undefined;
  private stopping = false;
  private done: Promise<void> | undefined;

  constructor(private readonly o: DockerEventsOptions) {}

  start(): void {
    this.done = this.watch();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.stream?.destroy();
    await this.done;
  }

  private async watch(): Promise<void> {
    let attempt = 0;
    while (!this.stopping) {
      try {
        const since = eventsSince(this.o.since(), Date.now());
        const stream = (await this.o.docker.getEvents({ since: since as unknown as number, filters: { type: ['container', 'network'] } })) as unknown as EventStream;
        this.stream = stream;
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
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt++)));
    }
  }

  private async handle(text: string): Promise<void> {
    try {
      await this.o.onEvent(JSON.parse(text) as DockerEvent);
    } catch (err) {
      this.o.log.error({ err: errorMessage(err), event: text.slice(0, 300) }, 'docker event not handled');
    }
  }
}
