/** One small interface for moving a file to or from a URL, whatever the scheme. */
import { redactUrl } from '../../../server/redact.js';

export interface TransferOptions {
  /** Aborted on the per-file timeout or when the agent stops. */
  signal: AbortSignal;
}

/** TLS material for https: a client certificate (the proxy) and extra trusted CAs (X509_CERT_DIR). */
export interface TlsMaterial {
  cert?: string;
  key?: string;
  ca?: string[];
}

export interface Transferred {
  size: number;
  adler32: string;
}

export interface Transfer {
  /** Fetches `url` into the local file `dest`, computing size and adler32 of what arrived. */
  download(url: string, dest: string, opts: TransferOptions): Promise<Transferred>;
  /** Sends the local file `src` to `url` (creating parent collections when needed). */
  upload(src: string, url: string, opts: TransferOptions): Promise<Transferred>;
  /** Size of the file at `url`, or null when there is none. */
  stat(url: string, opts: TransferOptions): Promise<{ size: number } | null>;
  /**
   * Publishes `from` under the name `to` on the same storage (a rename: readers see all of it or
   * nothing). Without `replace`, false when something is already at `to` (and nothing changed).
   */
  rename(from: string, to: string, opts: TransferOptions & { replace: boolean }): Promise<boolean>;
  /** Deletes the file at `url`; a file that is not there is no error. */
  remove(url: string, opts: TransferOptions): Promise<void>;
  /** adler32 of the file at `url` when the storage can tell without sending it; null when it cannot. */
  checksum(url: string, opts: TransferOptions): Promise<string | null>;
}

/**
 * A transfer failed. `cause` is short and names what went wrong ("404 Not Found", "connection
 * refused", "timed out after 600 s"); `retryable` is false when trying again cannot help.
 */
export class TransferError extends Error {
  constructor(
    readonly url: string,
    readonly causeText: string,
    readonly retryable: boolean,
  ) {
    super(`${redactUrl(url)}: ${causeText}`);
  }
}

/** A readable cause for a network or process error. */
export function describeError(err: unknown, timeoutS?: number): { text: string; retryable: boolean } {
  if (err instanceof TransferError) return { text: err.causeText, retryable: err.retryable };
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'TimeoutError' || e?.code === 'ETIMEDOUT') return { text: timeoutS ? `timed out after ${timeoutS} s` : 'timed out', retryable: true };
  if (e?.name === 'AbortError' || e?.code === 'ABORT_ERR') return { text: 'aborted', retryable: false };
  const byCode: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ECONNRESET: 'connection reset',
    EHOSTUNREACH: 'host unreachable',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    EPIPE: 'connection closed while sending',
    ENOSPC: 'no space left on the local disk',
  };
  if (e?.code === 'ERR_INVALID_PROTOCOL' || e?.code === 'ERR_INVALID_URL') return { text: e.message, retryable: false };
  if (e?.code && byCode[e.code]) return { text: byCode[e.code]!, retryable: e.code !== 'ENOSPC' };
  return { text: e?.message ?? String(err), retryable: true };
}
