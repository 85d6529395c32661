/**
 * A container's log stream, read from Docker's logs endpoint over its socket directly.
 *
 * Docker sends each log message as an HTTP chunk of its own. Through Node's HTTP client
 * (dockerode) every chunk became a Buffer, a push into the response stream and a `data`
 * event: 1.9–2.2 CPU µs per line against 1.0–1.5 for the same log read from the socket with
 * the chunked encoding undone in place (BENCHMARKS.md, "Collector per-line work"), the
 * largest single cost left in the collector's per-line work (issue 13). This reader makes
 * the same request (`GET /containers/{id}/logs`, stdout and stderr with timestamps) on a
 * connection of its own and hands on each socket read's body bytes as one chunk: the frame
 * headers inside are read by MessageReader, which takes chunk boundaries anywhere.
 *
 * The stream it gives is a Readable with the connection as its `socket`, as an HTTP response
 * is: stream-read.ts pauses it and stops the socket's reads when the Kafka buffer has no room,
 * and counts what both hold (issue 19). Errors are dockerode's: a status other than 200
 * rejects with an Error carrying `statusCode` and Docker's JSON message.
 *
 * Used where Docker is reached over a unix socket or plain HTTP; a client with TLS, SSH, a
 * path prefix, credentials or an agent of its own keeps dockerode's request (logSourceFor).
 */
import net from 'node:net';
import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import type { LogStream } from './stream-read.js';

export interface LogsRequest {
  follow: boolean;
  /** Docker's `since`: seconds since the epoch, with a fraction (sinceParam). */
  since: string;
  /** Aborts the request (and closes the stream) while Docker has not answered. */
  abortSignal: AbortSignal;
}

/** Opens a container's logs (stdout and stderr, with timestamps) as a stream of Docker's frames. */
export type LogSource = (containerId: string, req: LogsRequest) => Promise<LogStream>;

export type DockerEndpoint = { socketPath: string } | { host: string; port: number };

interface ModemFields {
  socketPath?: unknown;
  host?: unknown;
  port?: unknown;
  protocol?: unknown;
  version?: unknown;
  pathPrefix?: unknown;
  username?: unknown;
  agent?: unknown;
  headers?: Record<string, unknown>;
}

/** The endpoint this reader can reach `docker`'s daemon at, or undefined when dockerode's own request is needed. */
export function endpointOf(docker: Docker): { endpoint: DockerEndpoint; version: string | undefined } | undefined {
  const m = (docker as unknown as { modem?: ModemFields }).modem;
  if (!m || m.pathPrefix || m.username || m.agent || (m.headers && Object.keys(m.headers).length > 0)) return undefined;
  const version = typeof m.version === 'string' && m.version !== '' ? m.version : undefined;
  if (typeof m.socketPath === 'string' && m.socketPath !== '') return { endpoint: { socketPath: m.socketPath }, version };
  if (typeof m.host === 'string' && m.host !== '' && m.protocol === 'http') return { endpoint: { host: m.host, port: Number(m.port ?? 2375) }, version };
  return undefined;
}

/** The log source for `docker`: the direct reader where it can reach the daemon, dockerode's request otherwise. */
export function logSourceFor(docker: Docker): LogSource {
  const e = endpointOf(docker);
  return e ? directLogSource(e.endpoint, e.version) : dockerodeLogSource(docker);
}

/** The logs request through dockerode (`container.logs`). */
export function dockerodeLogSource(docker: Docker): LogSource {
  return async (id, req) => {
    const res = (await docker.getContainer(id).logs({
      follow: req.follow as true,
      stdout: true,
      stderr: true,
      timestamps: true,
      since: req.since as unknown as number,
      abortSignal: req.abortSignal,
    })) as unknown;
    // Without follow, dockerode reads the whole body into one Buffer.
    return (Buffer.isBuffer(res) ? Readable.from([res]) : res) as LogStream;
  };
}

/** The logs request on a connection of its own to `endpoint` (a unix socket or plain HTTP). */
export function directLogSource(endpoint: DockerEndpoint, version?: string): LogSource {
  return (id, req) => {
    const query = `follow=${req.follow ? 1 : 0}&stdout=1&stderr=1&timestamps=1&since=${encodeURIComponent(req.since)}`;
    const target = `${version ? `/${version}` : ''}/containers/${encodeURIComponent(id)}/logs?${query}`;
    const host = 'socketPath' in endpoint ? 'docker' : `${endpoint.host}:${endpoint.port}`;
    return new Promise<LogStream>((resolve, reject) => {
      if (req.abortSignal.aborted) return reject(abortError());
      const socket = 'socketPath' in endpoint ? net.connect(endpoint.socketPath) : net.connect(endpoint.port, endpoint.host);
      const response = new DockerLogResponse(socket, resolve, reject);
      const onAbort = () => response.abort();
      req.abortSignal.addEventListener('abort', onAbort, { once: true });
      response.once('settled', () => req.abortSignal.removeEventListener('abort', onAbort));
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: logmeter\r\nConnection: close\r\n\r\n`);
    });
  };
}

function abortError(): Error {
  return Object.assign(new Error('the logs request was aborted'), { name: 'AbortError', code: 'ABORT_ERR' });
}

const CR = 0x0d;
const LF = 0x0a;

const enum State {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  TrailerLine,
  TrailerLf,
  EndLf,
  Done,
}

/** Hex digit value, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

/**
 * HTTP/1.1's chunked transfer coding (RFC 9112 §7.1) undone in place: decode() moves the
 * body bytes of a buffer to its start and says how many there are. Chunk extensions and
 * trailer fields are read past. Throws on a malformed coding.
 */
export class ChunkedDecoder {
  private state = State.Size;
  private size = 0;
  private digits = 0;
  private left = 0;

  /** True once the last chunk and the trailer section were read. */
  get done(): boolean {
    return this.state === State.Done;
  }

  /** True when the bytes decoded so far end between two chunks (no chunk's data or size line is cut). */
  get between(): boolean {
    return this.state === State.Size && this.digits === 0;
  }

  decode(d: Buffer): number {
    let w = 0;
    let i = 0;
    const n = d.length;
    while (i < n) {
      switch (this.state) {
        case State.Data: {
          const take = Math.min(this.left, n - i);
          if (w !== i) d.copyWithin(w, i, i + take);
          w += take;
          i += take;
          this.left -= take;
          if (this.left === 0) this.state = State.DataCr;
          break;
        }
        case State.Size: {
          const c = d[i++]!;
          const v = hexValue(c);
          if (v >= 0) {
            if (++this.digits > 8) throw new Error('chunked body: a chunk size of more than 8 hex digits');
            this.size = this.size * 16 + v;
          } else if (this.digits === 0) throw new Error(`chunked body: a chunk size expected, got byte ${c}`);
          else if (c === CR) this.state = State.SizeLf;
          else if (c === 0x3b || c === 0x20 || c === 0x09) this.state = State.Extension;
          else throw new Error(`chunked body: byte ${c} in a chunk size`);
          break;
        }
        case State.Extension:
          if (d[i++] === CR) this.state = State.SizeLf;
          break;
        case State.SizeLf:
          if (d[i++] !== LF) throw new Error('chunked body: CR without LF after a chunk size');
          if (this.size === 0) this.state = State.TrailerStart;
          else {
            this.left = this.size;
            this.state = State.Data;
          }
          this.size = 0;
          this.digits = 0;
          break;
        case State.DataCr:
          if (d[i++] !== CR) throw new Error('chunked body: a chunk longer than its size');
          this.state = State.DataLf;
          break;
        case State.DataLf:
          if (d[i++] !== LF) throw new Error('chunked body: CR without LF after a chunk');
          this.state = State.Size;
          break;
        case State.TrailerStart:
          this.state = d[i++] === CR ? State.EndLf : State.TrailerLine;
          break;
        case State.TrailerLine:
          if (d[i++] === CR) this.state = State.TrailerLf;
          break;
        case State.TrailerLf:
          if (d[i++] !== LF) throw new Error('chunked body: CR without LF in the trailer');
          this.state = State.TrailerStart;
          break;
        case State.EndLf:
          if (d[i++] !== LF) throw new Error('chunked body: CR without LF at its end');
          this.state = State.Done;
          return w;
        case State.Done:
          return w;
      }
    }
    return w;
  }
}

/** The end of an HTTP head (`\r\n\r\n`) in `b`, or -1. */
function headEnd(b: Buffer): number {
  const i = b.indexOf('\r\n\r\n', 0, 'latin1');
  return i < 0 ? -1 : i + 4;
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * One logs response: the head is read here; with status 200 the stream is handed to
 * `resolve` and the body flows through it, otherwise the body is read and `reject` gets
 * dockerode's kind of error. Emits `settled` once either was called.
 */
class DockerLogResponse extends Readable {
  readonly socket: net.Socket;
  private head: Buffer[] = [];
  private headBytes = 0;
  private status = 0;
  /** How the body ends: chunked, after `length` bytes, or when the connection closes. */
  private chunked: ChunkedDecoder | undefined;
  private length = -1;
  private settled = false;
  private ended = false;
  private errorBody: Buffer[] = [];
  private errorBodyBytes = 0;

  constructor(
    socket: net.Socket,
    private readonly resolveStream: (s: LogStream) => void,
    private readonly rejectStream: (err: Error) => void,
  ) {
    super();
    this.socket = socket;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.onEnd());
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    if (!this.settled) this.settle(() => this.rejectStream(err ?? new Error('the logs stream was closed before Docker answered')));
    cb(err);
  }

  abort(): void {
    if (this.settled) return;
    this.settle(() => this.rejectStream(abortError()));
    this.socket.destroy();
  }

  /** Resolves or rejects the request, once. A rejected response is never a stream: nothing is emitted on it after. */
  private settle(fn: () => void): void {
    this.settled = true;
    if (this.status !== 200) this.ended = true;
    fn();
    this.emit('settled');
  }

  private fail(err: Error): void {
    if (!this.settled) {
      this.socket.destroy();
      this.settle(() => this.rejectStream(err));
    } else if (!this.ended) this.destroy(err);
  }

  private onData(d: Buffer): void {
    try {
      if (this.status === 0) {
        const rest = this.readHead(d);
        if (rest === undefined) return;
        d = rest;
      }
      if (this.status === 200) this.body(d);
      else this.errorBodyPart(d);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Takes head bytes; once the head is complete, returns the bytes after it (possibly none). */
  private readHead(d: Buffer): Buffer | undefined {
    this.head.push(d);
    this.headBytes += d.length;
    const all = this.head.length === 1 ? d : Buffer.concat(this.head, this.headBytes);
    const end = headEnd(all);
    if (end < 0) {
      if (this.headBytes > MAX_HEAD_BYTES) throw new Error(`Docker's answer to the logs request has a head over ${MAX_HEAD_BYTES} bytes`);
      this.head = [all];
      return undefined;
    }
    this.head = [];
    const lines = all.toString('latin1', 0, end - 4).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new Error(`Docker's answer to the logs request is not HTTP: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
    this.status = Number(m[1]);
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'transfer-encoding' && value.toLowerCase().split(',').map((v) => v.trim()).at(-1) === 'chunked') this.chunked = new ChunkedDecoder();
      else if (name === 'content-length' && /^\d+$/.test(value)) this.length = Number(value);
    }
    if (this.status === 200) this.settle(() => this.resolveStream(this));
    const rest = all.subarray(end);
    if (this.status === 200 && this.bodyDone) this.finish();
    return rest;
  }

  /** The body's bytes in the read `d`, moved to its start (the chunked coding undone, a sized body cut at its end): how many. */
  private bodyBytes(d: Buffer): number {
    if (this.chunked) return this.chunked.decode(d);
    if (this.length < 0) return d.length;
    const n = Math.min(d.length, this.length);
    this.length -= n;
    return n;
  }

  /** True once the whole body was read (a body ended by the connection never is). */
  private get bodyDone(): boolean {
    return this.chunked ? this.chunked.done : this.length === 0;
  }

  /** Body bytes of a 200 response: handed on, one push per socket read. */
  private body(d: Buffer): void {
    if (this.ended) return;
    const n = this.bodyBytes(d);
    if (n > 0 && !this.push(n === d.length ? d : d.subarray(0, n))) this.socket.pause();
    if (this.bodyDone) this.finish();
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.push(null);
    this.socket.destroy();
  }

  private errorBodyPart(d: Buffer): void {
    const n = this.bodyBytes(d);
    if (this.errorBodyBytes < MAX_ERROR_BODY_BYTES) {
      this.errorBody.push(Buffer.from(d.subarray(0, Math.min(n, MAX_ERROR_BODY_BYTES - this.errorBodyBytes))));
      this.errorBodyBytes += n;
    }
    if (this.bodyDone) this.rejectWithStatus();
  }

  private rejectWithStatus(): void {
    if (this.settled) return;
    const text = Buffer.concat(this.errorBody).toString('utf8');
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      // Not JSON: the text is the message.
    }
    const message = typeof json === 'object' && json !== null && typeof (json as { message?: unknown }).message === 'string' ? (json as { message: string }).message : text.trim();
    const err = Object.assign(new Error(`(HTTP code ${this.status}) ${message}`), { statusCode: this.status, json });
    this.socket.destroy();
    this.settle(() => this.rejectStream(err));
  }

  private onEnd(): void {
    if (!this.settled) {
      if (this.status !== 0 && this.status !== 200) return this.rejectWithStatus();
      return this.settle(() => this.rejectStream(new Error('Docker closed the connection before answering the logs request')));
    }
    if (this.ended) return;
    // A body without a length ends with the connection; a chunked or sized one must not.
    if (!this.chunked && this.length < 0) return this.finish();
    this.ended = true;
    this.destroy(new Error(this.chunked ? 'Docker closed the log stream inside its chunked body' : `Docker closed the log stream ${this.length} bytes before its end`));
  }
}
