/**
 * The little of HTTP/1.1 a download reads: the response head (status line and headers) and the
 * three ways a body can be framed (Content-Length, chunked, until the server closes). Pure
 * functions over bytes, so that the socket code (http-get.ts) stays about sockets and files.
 */

export interface ResponseHead {
  status: number;
  statusText: string;
  /** Lower-case names; repeated headers joined with ", " */
  headers: Map<string, string>;
}

/** A head bigger than this is refused (Node's client allows 16 KiB). */
export const MAX_HEAD_BYTES = 64 << 10;

/** Thrown for bytes that are not HTTP: not retryable, the server will send the same again. */
export class ProtocolError extends Error {}

/**
 * Where the head ends in `buf[0, end)`: the index just past its blank line, or -1 while it is
 * incomplete. (Bare LF line ends are accepted, as by most clients.)
 */
export function headEnd(buf: Uint8Array, end: number): number {
  for (let i = 0; i < end; i++) {
    if (buf[i] !== 0x0a) continue;
    if (i + 1 < end && buf[i + 1] === 0x0a) return i + 2;
    if (i + 2 < end && buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

export function parseHead(text: string): ResponseHead {
  const lines = text.split(/\r?\n/);
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? '');
  if (!m) throw new ProtocolError(`not an HTTP/1.x response: "${(lines[0] ?? '').slice(0, 60)}"`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0 || /^\s/.test(line)) throw new ProtocolError(`malformed response header "${line.slice(0, 60)}"`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', headers };
}

/**
 * A body's framing. take() is handed the bytes just received, buf[start, end), moves the body's
 * own bytes among them to buf[start, start + n) (chunk framing removed, anything after the body
 * dropped) and returns n. Moving within the same buffer is safe: data only ever moves down.
 */
export interface BodyFraming {
  take(buf: Uint8Array, start: number, end: number): number;
  /** The whole body has arrived (the rest of the connection is not needed). */
  readonly complete: boolean;
  /** Why the body is incomplete when the connection ends now, or null when that is its end. */
  endedEarly(): string | null;
}

/** The framing the head announces (RFC 9112 §6.3: chunked wins over Content-Length). */
export function bodyFraming(head: ResponseHead): BodyFraming {
  const coding = head.headers.get('transfer-encoding');
  if (coding !== undefined) {
    if (!/(^|,)\s*chunked\s*$/i.test(coding)) throw new ProtocolError(`unsupported Transfer-Encoding "${coding}"`);
    return new ChunkedBody();
  }
  const length = head.headers.get('content-length');
  if (length === undefined) return new UntilClose();
  if (!/^\d+$/.test(length)) throw new ProtocolError(`invalid Content-Length "${length}"`);
  return new LengthBody(Number(length));
}

export class LengthBody implements BodyFraming {
  private received = 0;

  constructor(readonly expected: number) {}

  take(_buf: Uint8Array, start: number, end: number): number {
    const n = Math.min(end - start, this.expected - this.received);
    this.received += n;
    return n;
  }

  get complete(): boolean {
    return this.received === this.expected;
  }

  endedEarly(): string | null {
    return this.complete ? null : `connection ended after ${this.received} of ${this.expected} bytes`;
  }
}

class UntilClose implements BodyFraming {
  readonly complete = false;

  take(_buf: Uint8Array, start: number, end: number): number {
    return end - start;
  }

  endedEarly(): string | null {
    return null;
  }
}

const LF = 0x0a;
/** A chunk-size line (with extensions) or trailer line longer than this is refused. */
const MAX_LINE = 4096;

/**
 * Chunked transfer coding: `<hex size>[;ext]CRLF <data> CRLF`, …, `0 CRLF [trailers] CRLF`.
 * Lines may be split anywhere between reads, so the line being read is kept as text.
 */
export class ChunkedBody implements BodyFraming {
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done' = 'size';
  private line = '';
  private left = 0;
  private received = 0;

  get complete(): boolean {
    return this.state === 'done';
  }

  endedEarly(): string | null {
    return this.complete ? null : `connection ended in the middle of a chunked body, after ${this.received} bytes`;
  }

  take(buf: Uint8Array, start: number, end: number): number {
    let out = start;
    let i = start;
    while (i < end && this.state !== 'done') {
      if (this.state === 'data') {
        const n = Math.min(this.left, end - i);
        if (out !== i) buf.copyWithin(out, i, i + n);
        out += n;
        i += n;
        this.left -= n;
        this.received += n;
        if (this.left === 0) this.state = 'data-end';
        continue;
      }
      // The other states read lines: collect up to LF.
      const lf = buf.indexOf(LF, i);
      const stop = lf === -1 || lf >= end ? end : lf;
      if (this.line.length + stop - i > MAX_LINE) throw new ProtocolError('chunked body: line too long');
      this.line += Buffer.from(buf.buffer, buf.byteOffset + i, stop - i).toString('latin1');
      i = stop;
      if (stop === end) break;
      i++; // past the LF
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      this.endLine(line);
    }
    return out - start;
  }

  private endLine(line: string): void {
    if (this.state === 'data-end') {
      if (line !== '') throw new ProtocolError('chunked body: chunk data longer than its size');
      this.state = 'size';
    } else if (this.state === 'size') {
      const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (!m) throw new ProtocolError(`chunked body: bad chunk size line "${line.slice(0, 40)}"`);
      this.left = parseInt(m[1]!, 16);
      this.state = this.left === 0 ? 'trailer' : 'data';
    } else if (line === '') {
      this.state = 'done'; // the blank line after the (ignored) trailers
    }
  }
}
