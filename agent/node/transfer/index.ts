/** Picks the transfer for a URL by its scheme and runs it with a per-file timeout and retries. */
import type { Logger } from '../../../server/log.js';
import { redactUrl } from '../../../server/redact.js';
import { isAuthFailure, type AuthKind, type StorageCredentials } from '../credentials/index.js';
import type { TlsMaterial } from './http.js';
import { describeError, TransferError, type Transfer } from './types.js';

export { TransferError } from './types.js';
export type { Transfer, Transferred } from './types.js';

export type TransferTool = 'auto' | 'builtin' | 'gfal';

/** Schemes only gfal2 speaks here (and that need a grid proxy). */
export const GRID_SCHEMES = ['srm:', 'gsiftp:', 'root:', 'xroot:'];
const BUILTIN_SCHEMES = ['file:', 'http:', 'https:', 'dav:', 'davs:'];

export interface TransferConfig {
  tool: TransferTool;
  timeoutS: number;
  retries: number;
  retryDelayS: number;
  env: NodeJS.ProcessEnv;
  /** Loads the source of TLS material for https, on the first http(s)/dav(s) transfer */
  tls: () => Promise<() => TlsMaterial>;
  /** Macaroons and bearer tokens for http(s)/dav(s), re-read (and refreshed) before each attempt */
  credentials?: StorageCredentials;
}

/**
 * Each implementation (with node:https, execa, the adler32 code) is loaded on its first use: an
 * agent whose tokens use only some schemes, or none, never pays for the rest (docs/agent.md, Memory).
 */
export class Transfers {
  private readonly file: Transfer;
  private readonly builtinHttp: Transfer;
  private readonly gfal: Transfer;

  constructor(private readonly config: TransferConfig) {
    this.file = lazyTransfer(async () => (await import('./file.js')).fileTransfer);
    this.builtinHttp = lazyTransfer(async () => (await import('./http.js')).httpTransfer(await config.tls(), (u) => config.credentials?.headers(u) ?? {}));
    this.gfal = lazyTransfer(async () => (await import('./gfal.js')).gfalTransfer({ timeoutS: config.timeoutS, env: config.env, auth: (u) => config.credentials?.gfalEnv(u) ?? {} }));
  }

  /** The implementation for a URL; throws a TransferError for a scheme nobody speaks. */
  for(url: string): Transfer {
    const scheme = schemeOf(url);
    if (scheme === 'file:') return this.file;
    if (this.config.tool === 'gfal' || GRID_SCHEMES.includes(scheme)) return this.gfal;
    if (BUILTIN_SCHEMES.includes(scheme)) return this.builtinHttp;
    if (this.config.tool === 'builtin') throw new TransferError(url, `unsupported URL scheme "${scheme}" (built-in client: file, http(s), dav(s))`, false);
    return this.gfal;
  }

  /**
   * Runs `op` with a fresh per-file timeout per attempt, retrying retryable failures with
   * exponential backoff. The final error names the URL, the cause and how many attempts were made.
   */
  async withRetries<T>(what: string, url: string, signal: AbortSignal, log: Logger, op: (signal: AbortSignal) => Promise<T>, auth?: readonly AuthKind[]): Promise<T> {
    const attempts = this.config.retries + 1;
    // A refusal (401/403) is tried once more with a fresh credential before it counts.
    let authRetried = false;
    let fresh = false;
    for (let attempt = 1; ; attempt++) {
      // Re-read (and if need be refreshed) before each attempt: a NodeFault here gives the token back.
      await this.config.credentials?.prepare(url, { fresh, required: auth, signal, log });
      fresh = false;
      const perTry = AbortSignal.any([signal, AbortSignal.timeout(this.config.timeoutS * 1000)]);
      try {
        return await op(perTry);
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        const { text, retryable } = describeError(perTry.aborted ? perTry.reason : err, this.config.timeoutS);
        if (!authRetried && err instanceof TransferError && isAuthFailure(text) && this.config.credentials?.find(url)) {
          authRetried = fresh = true;
          attempt--;
          log.warn({ url: redactUrl(url), cause: text }, `${what} refused; retrying once with a fresh credential`);
          continue;
        }
        if (!retryable || attempt >= attempts) {
          const tries = attempt > 1 ? ` (after ${attempt} attempts)` : '';
          throw new TransferError(url, `${text}${tries}`, retryable);
        }
        const delayS = this.config.retryDelayS * 2 ** (attempt - 1) * (0.75 + Math.random() * 0.5);
        log.warn({ url: redactUrl(url), attempt, cause: text, retryInS: Math.round(delayS * 10) / 10 }, `${what} failed, retrying`);
        await sleep(delayS * 1000, signal);
      }
    }
  }
}

function lazyTransfer(load: () => Promise<Transfer>): Transfer {
  let loaded: Promise<Transfer> | undefined;
  const get = () => (loaded ??= load());
  return {
    download: async (url, dest, opts) => (await get()).download(url, dest, opts),
    upload: async (src, url, opts) => (await get()).upload(src, url, opts),
    stat: async (url, opts) => (await get()).stat(url, opts),
    rename: async (from, to, opts) => (await get()).rename(from, to, opts),
    remove: async (url, opts) => (await get()).remove(url, opts),
    checksum: async (url, opts) => (await get()).checksum(url, opts),
  };
}

export function schemeOf(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:)/i.exec(url);
  return m ? m[1]!.toLowerCase() : 'file:';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}
