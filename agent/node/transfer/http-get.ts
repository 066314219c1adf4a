/**
 * One GET straight off the socket into a file, for stage-in. Node's http client reads a socket in
 * 64 KiB pieces, each a fresh Buffer passed through several stream events and then a write
 * stream: about 2 CPU-seconds per GiB, twice curl's. Here the socket is read with `onread` into a
 * few reused 1 MiB slots that live in the adler32 module's memory: each piece is summed in place
 * as it arrives and a full slot goes to the file from the same bytes (no Buffer per piece, no copy,
 * the write on libuv's thread pool while the next slot fills). When every slot still waits for
 * its write, reading pauses: the disk's pace is the backpressure.
 *
 * It speaks what a download needs and no more: HTTP/1.1 with `Connection: close`, one request per
 * connection, the body framed by Content-Length, chunked coding or the end of the connection
 * (http1.ts). Redirects and status codes are the caller's (http.ts); only a 200's body is kept.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { ADLER32_INITIAL, adler32Hex, checksumMemory } from '../adler32.js';
import { bodyFraming, headEnd, MAX_HEAD_BYTES, parseHead, ProtocolError, type BodyFraming, type ResponseHead } from './http1.js';
import { TransferError, type TlsMaterial, type Transferred } from './types.js';

const SLOT_BYTES = 1 << 20;
/** 4 MiB in all: room for the disk's hiccups on a busy node before reading has to pause */
const SLOTS = 4;
/** A slot with less room left than this is written out: reads into a sliver would waste events. */
const MIN_READ = 64 << 10;

export interface GetOptions {
  signal: AbortSignal;
  /** Extra request headers (Authorization) */
  headers: Record<string, string>;
  /** For https */
  tls?: TlsMaterial;
  /** The URL as the token gives it, for error messages */
  shownUrl: string;
}

export interface GetResult {
  head: ResponseHead;
  /** Size and adler32 of what went into the file: only for a 200 */
  body?: Transferred;
}

/** GETs `url`; a 200's body goes into `dest` (created then), any other answer only returns its head. */
export function getToFile(url: URL, dest: string, opts: GetOptions): Promise<GetResult> {
  return new Promise((resolve, reject) => new Download(url, dest, opts, resolve, reject));
}

class Download {
  private readonly memory = checksumMemory(SLOT_BYTES * SLOTS);
  private readonly slots = Array.from({ length: SLOTS }, (_, i) => this.memory.buffer.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES));
  /** Slots handed to the file and not yet written */
  private readonly writing = new Array<boolean>(SLOTS).fill(false);
  private readonly writes = new Set<Promise<void>>();
  private readonly socket: net.Socket;
  private cur = 0;
  /** Bytes in the current slot: the head while it is incomplete, then body bytes */
  private fill = 0;
  private head: ResponseHead | null = null;
  private framing: BodyFraming | null = null;
  private file: Promise<fs.promises.FileHandle> | null = null;
  private fileOffset = 0;
  private adler = ADLER32_INITIAL;
  private size = 0;
  private paused = false;
  private ending = false;
  /** A failed write (or open) of the file: it fails the download whatever else happened */
  private fileError: unknown;

  constructor(
    url: URL,
    private readonly dest: string,
    private readonly opts: GetOptions,
    private readonly resolve: (r: GetResult) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    const onread = { buffer: () => this.slots[this.cur]!.subarray(this.fill), callback: (n: number) => this.received(n) };
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const https = url.protocol === 'https:';
    const port = Number(url.port) || (https ? 443 : 80);
    if (https) {
      // SNI carries host names only; the certificate is checked against the host either way.
      // (tls.connect takes `onread` like net.connect; the type definitions lack it.)
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = { host, port, servername: net.isIP(host) ? undefined : host, ...opts.tls, onread };
      this.socket = tls.connect(options);
    } else {
      this.socket = net.connect({ host, port, onread });
    }
    this.socket.on('error', (err) => this.end(err));
    this.socket.on('close', () => this.connectionClosed());
    opts.signal.addEventListener('abort', this.aborted, { once: true });
    if (opts.signal.aborted) {
      this.aborted();
      return;
    }
    const path = url.pathname + url.search;
    const headers = Object.entries({ Host: url.host, ...opts.headers, Connection: 'close' }).map(([k, v]) => `${k}: ${v}\r\n`);
    this.socket.write(`GET ${path} HTTP/1.1\r\n${headers.join('')}\r\n`, 'latin1');
  }

  private readonly aborted = () => this.end(this.opts.signal.reason);

  /** `n` new bytes at this.fill in the current slot; false pauses reading. */
  private received(n: number): boolean {
    if (this.ending) return false;
    try {
      return this.head ? this.receivedBody(this.fill, n) : this.receivedHead(n);
    } catch (err) {
      this.end(err);
      return false;
    }
  }

  private receivedHead(n: number): boolean {
    const buf = this.slots[0]!;
    this.fill += n;
    for (;;) {
      const end = headEnd(buf, this.fill);
      if (end === -1) {
        if (this.fill >= MAX_HEAD_BYTES) throw new ProtocolError(`response head longer than ${MAX_HEAD_BYTES} bytes`);
        return true;
      }
      const head = parseHead(buf.toString('latin1', 0, end).trimEnd());
      // What follows the head moves to the start of the slot: the body begins there.
      buf.copyWithin(0, end, this.fill);
      this.fill -= end;
      // 1xx answers are interim: the real one follows.
      if (head.status >= 100 && head.status < 200) continue;
      this.head = head;
      if (head.status !== 200) {
        this.end();
        return false;
      }
      this.framing = bodyFraming(head);
      this.file = fs.promises.open(this.dest, 'w');
      const body = this.fill;
      this.fill = 0;
      return this.receivedBody(0, body);
    }
  }

  private receivedBody(at: number, n: number): boolean {
    const slot = this.slots[this.cur]!;
    const kept = this.framing!.take(slot, at, at + n);
    if (kept > 0) {
      this.adler = this.memory.update(this.adler, slot.subarray(at, at + kept));
      this.size += kept;
    }
    this.fill = at + kept;
    if (this.framing!.complete) {
      this.end();
      return false;
    }
    if (SLOT_BYTES - this.fill < MIN_READ) {
      this.writeSlot();
      if (this.writing[this.cur]) {
        this.paused = true;
        return false;
      }
    }
    return true;
  }

  /** Hands the current slot to the file and moves on to the next. */
  private writeSlot(): void {
    if (this.fill === 0) return;
    const index = this.cur;
    const bytes = this.fill;
    const offset = this.fileOffset;
    this.fileOffset += bytes;
    this.writing[index] = true;
    this.cur = (index + 1) % SLOTS;
    this.fill = 0;
    const write = this.file!.then((file) => writeAll(file, this.slots[index]!, bytes, offset)).then(
      () => {
        this.writing[index] = false;
        if (this.paused && !this.writing[this.cur] && !this.ending) {
          this.paused = false;
          this.socket.resume();
        }
      },
      (err: unknown) => {
        this.fileError ??= err;
        this.end(err);
      },
    );
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  private connectionClosed(): void {
    if (this.ending) return;
    if (!this.head) return this.end(new TransferError(this.opts.shownUrl, 'connection closed before the response headers', true));
    // Only a body framed by the connection itself ends here.
    const early = this.framing!.endedEarly();
    this.end(early ? new TransferError(this.opts.shownUrl, early, true) : undefined);
  }

  /** Stops reading and settles once the file is written and closed; the first outcome counts. */
  private end(error?: unknown): void {
    if (this.ending) return;
    this.ending = true;
    this.opts.signal.removeEventListener('abort', this.aborted);
    this.socket.destroy();
    if (error instanceof ProtocolError) error = new TransferError(this.opts.shownUrl, error.message, false);
    if (!error && this.file) this.writeSlot();
    void this.finish(error);
  }

  private async finish(error: unknown): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
    error ??= this.fileError;
    try {
      if (this.file) await (await this.file).close();
    } catch (err) {
      error ??= err;
    }
    if (error !== undefined) return this.reject(error);
    this.resolve({ head: this.head!, body: this.file ? { size: this.size, adler32: adler32Hex(this.adler) } : undefined });
  }
}

async function writeAll(file: fs.promises.FileHandle, buf: Buffer, bytes: number, offset: number): Promise<void> {
  for (let done = 0; done < bytes; ) done += (await file.write(buf, done, bytes - done, offset + done)).bytesWritten;
}
