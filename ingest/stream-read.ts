/**
 * Reads a Docker log stream into messages, one at a time, and stops reading at the source
 * while the Kafka buffer has no room (issue 19, item 2).
 *
 * The collector's reader of Docker's logs endpoint (docker-logs.ts) pushes each socket read's
 * body as one chunk (dockerode's HTTP response, used where that reader cannot be, pushes one per
 * log message); MessageReader takes chunk boundaries anywhere. A chunk is handed on at most
 * SLICE_MESSAGES messages per event-loop turn. When the reader must wait, the stream is paused:
 * no chunk is read ahead and nothing is parsed ahead; the rest of the chunk being read stays
 * bytes in the MessageReader. The source still pushes the rest of the socket read it is in
 * into the paused stream, and pauses the socket once the stream holds its high-water mark; a
 * paused socket would then take one more read (up to 64 KiB) from the kernel into its own
 * buffer, which stopSocket() prevents (again after Readable's read-ahead restarted the
 * socket's reads). What a waiting follower holds is therefore at most the rest of its chunk
 * and the stream's buffer (its high-water mark and the rest of one socket read),
 * measured by heldBytes(). While it waits, that is charged to the bound at its cost in
 * memory, bytes and chunks (heldCharge(), hooks.charge(), Sender.hold()): with hundreds of
 * followers waiting at once it adds up to tens of MiB. Only while waiting: the first wait
 * still comes when the buffered events alone fill the bound.
 */
import { Socket } from 'node:net';
import { errorMessage } from '../lib/errors.js';
import type { LineAssembler, Message, MessageReader } from './logstream.js';

export type LogStream = NodeJS.ReadableStream & { destroy(): void };

/** Messages handed on before the reader lets the event loop turn (readStream). */
const SLICE_MESSAGES = 128;

export interface ReadHooks {
  /** Takes one message (its line is handed on, or kept until it is complete). */
  onMessage(m: Message): void;
  /** True when the reader must wait for room before the next message. */
  full(): boolean;
  /** Resolves when there is room again, or on stop. */
  waitForRoom(): Promise<void>;
  /** Back to reading after a wait. */
  resumed(): void;
  /**
   * While waiting: what the reader holds now (heldCharge()) is to be charged to the bound, in
   * place of what was charged before. Called once the source has pushed what it had read when
   * the wait began, and again each time the HTTP parser pauses the socket meanwhile.
   */
  charge(): void;
  /** The wait is over (resumed or stopped): what was charged is released. */
  uncharge(): void;
  stopped(): boolean;
  /** Before each chunk is taken (the follower reads its clock once per chunk). */
  beforeChunk(): void;
  /** After each chunk is handed on (for the follower's retained-bytes figures). */
  afterChunk(chunk: Buffer): void;
}

/**
 * Reads `stream` to its end, or until `hooks.stopped()` when it is destroyed or a wait ends.
 * Rejects on a stream error, on a malformed stream (the reader throws), or when the stream
 * closes before its end without a stop.
 */
export function readStream(stream: LogStream, reader: MessageReader, hooks: ReadHooks): Promise<void> {
  const socket = (stream as { socket?: unknown }).socket;
  const sock = socket instanceof Socket ? socket : undefined;
  return new Promise<void>((resolve, reject) => {
    let waiting = false;
    let done = false;
    /** True while this reader holds the socket's reads stopped (stopSocket). */
    let socketStopped = false;
    /** True while what this reader holds is charged to the bound (hooks.charge). */
    let charged = false;
    // Two ticks on: by the first, the HTTP parser has pushed the rest of the socket read it was
    // in (into the paused stream); by the second, the socket's own read-ahead (Readable's
    // maybeReadMore, queued with nextTick after the first) has asked the kernel for one more
    // read, stopped here before it lands. Then what is held is what stays held.
    const chargeSoon = () =>
      process.nextTick(() =>
        process.nextTick(() => {
          if (!waiting || done) return;
          if (sock?.isPaused()) socketStopped = stopSocket(sock) || socketStopped;
          charged = true;
          hooks.charge();
        }),
      );
    const uncharge = () => {
      if (!charged) return;
      charged = false;
      hooks.uncharge();
    };
    const finish = (err?: unknown) => {
      if (done) return;
      done = true;
      uncharge();
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', finish);
      stream.removeListener('close', onClose);
      sock?.removeListener('pause', onSocketPause);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error(errorMessage(err)));
    };
    const onEnd = () => finish();
    const onClose = () => finish(hooks.stopped() ? undefined : new Error('log stream closed before its end'));
    // The parser pauses the socket once the paused stream holds its high-water mark.
    const onSocketPause = () => {
      if (!waiting || !sock) return;
      socketStopped = stopSocket(sock) || socketStopped;
      chargeSoon();
    };
    /** Hands on what the reader holds, one message at a time; false when it waits for room. */
    const drain = (): boolean => {
      let n = 0;
      for (let m = reader.next(); m; m = reader.next()) {
        hooks.onMessage(m);
        if (hooks.full()) {
          waitForRoom();
          return false;
        }
        if (++n === SLICE_MESSAGES) {
          yieldTurn();
          return false;
        }
      }
      return true;
    };
    // After a slice of messages the rest of the chunk waits for the event loop's next turn, so the
    // Kafka path's steps (a response, a compressed batch) are not held up behind a whole read.
    const yieldTurn = () => {
      stream.pause();
      setImmediate(() => {
        if (done) return;
        if (hooks.stopped()) return finish();
        try {
          if (drain()) stream.resume();
        } catch (err) {
          finish(err);
        }
      });
    };
    const waitForRoom = () => {
      waiting = true;
      stream.pause();
      if (sock?.isPaused()) socketStopped = stopSocket(sock);
      chargeSoon();
      void hooks.waitForRoom().then(() => {
        waiting = false;
        uncharge();
        if (done) return;
        if (hooks.stopped()) return finish();
        hooks.resumed();
        // The socket's reads start again here: a socket resumed by the HTTP response while
        // its last read was still pending (its stream's `reading` flag set) would not ask again.
        if (socketStopped && sock) startSocket(sock);
        socketStopped = false;
        try {
          if (drain()) stream.resume();
        } catch (err) {
          finish(err);
        }
      });
    };
    const onData = (chunk: Buffer) => {
      hooks.beforeChunk();
      reader.feed(chunk);
      try {
        drain();
      } catch (err) {
        finish(err);
        return;
      }
      hooks.afterChunk(chunk);
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', finish);
    stream.once('close', onClose);
    sock?.on('pause', onSocketPause);
  });
}

/**
 * Bytes taken from Docker and not handed on: the rest of a frame or chunk in the reader,
 * unfinished lines, and what waits in the stream's and its socket's buffers.
 */
export function heldBytes(reader: MessageReader, assembler: LineAssembler, stream: NodeJS.ReadableStream): number {
  const s = stream as NodeJS.ReadableStream & { readableLength?: number; socket?: { readableLength?: number } };
  return reader.pending + assembler.held + (s.readableLength ?? 0) + (s.socket?.readableLength ?? 0);
}

/**
 * What a chunk waiting in a paused stream costs beyond its bytes: its Buffer and ArrayBuffer
 * objects and the allocator's share. Measured ~735 B of RSS per 160-byte chunk (node 20,
 * BENCHMARKS.md); through dockerode's HTTP response every Docker frame is a chunk of its own
 * (~4.6 times its bytes), through docker-logs.ts one socket read is.
 */
export const HELD_CHUNK_OVERHEAD_BYTES = 576;

/** Chunks waiting in `stream`'s buffer (Node's internal state: 0 where it cannot be read). */
export function heldChunks(stream: NodeJS.ReadableStream): number {
  const st = (stream as { _readableState?: { buffer?: unknown; bufferIndex?: number } })._readableState;
  const b = st?.buffer;
  if (Array.isArray(b)) return b.length - (st?.bufferIndex ?? 0);
  const n = (b as { length?: unknown } | undefined)?.length;
  return typeof n === 'number' ? n : 0;
}

/** What a waiting reader's held bytes cost in memory: heldBytes() and the overhead of the chunks they are in. */
export function heldCharge(reader: MessageReader, assembler: LineAssembler, stream: NodeJS.ReadableStream): number {
  const s = stream as NodeJS.ReadableStream & { socket?: NodeJS.ReadableStream };
  return heldBytes(reader, assembler, stream) + (heldChunks(stream) + (s.socket ? heldChunks(s.socket) : 0)) * HELD_CHUNK_OVERHEAD_BYTES;
}

interface SocketHandle {
  reading?: boolean;
  readStop?: () => number;
  readStart?: () => number;
}

function handleOf(socket: Socket): SocketHandle | null | undefined {
  return (socket as unknown as { _handle?: SocketHandle | null })._handle;
}

/**
 * Stops a paused socket's reads from the kernel now. A paused net.Socket otherwise goes on
 * reading until its own buffer holds its high-water mark: one more read of up to 64 KiB per
 * waiting follower. Node does the same in pause() for sockets with their own read buffer
 * (`onread`). True when it stopped them (startSocket() starts them again).
 */
function stopSocket(socket: Socket): boolean {
  const handle = handleOf(socket);
  if (!handle?.reading || typeof handle.readStop !== 'function' || typeof handle.readStart !== 'function' || socket.destroyed) return false;
  handle.reading = false;
  handle.readStop();
  return true;
}

/**
 * Starts the socket's reads from the kernel again. A socket still paused takes one read into
 * its buffer and stops again by itself (net.Socket stops a handle whose pushes are refused);
 * one resumed takes reads on as before.
 */
function startSocket(socket: Socket): void {
  const handle = handleOf(socket);
  if (!handle || handle.reading || typeof handle.readStart !== 'function' || socket.destroyed) return;
  handle.reading = true;
  handle.readStart();
}
