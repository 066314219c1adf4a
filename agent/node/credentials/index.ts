/**
 * Credentials for storage reached over http(s)/dav(s), besides the grid proxy (proxy.ts, the TLS
 * client certificate): a macaroon for the URL's site (macaroons file), else a WLCG bearer token
 * (discovery rules). Everything is read afresh before each transfer attempt; a credential that
 * would expire before the transfer can finish is refreshed first (the refresh command, e.g.
 * `oidc-token lofar`, or waiting for the file to be rewritten by a refresher). Secrets go only into
 * an Authorization header or a child's environment (BEARER_TOKEN for gfal): never into a URL,
 * argument list, log line, token or error.
 */
import { execa } from 'execa';
import fs from 'node:fs';
import type { Logger } from '../../../server/log.js';
import { registerSecret } from '../../../server/redact.js';
import { EXIT } from '../../../server/token.js';
import { NodeFault } from '../../phases.js';
import { formatSeconds } from '../proxy.js';
import { discoverBearerToken } from './bearer.js';
import { macaroonForUrl, readMacaroons } from './macaroon-file.js';
import { parseMacaroon } from './macaroon.js';

export type AuthKind = 'macaroon' | 'bearer' | 'proxy';
export const AUTH_KINDS: readonly AuthKind[] = ['macaroon', 'bearer', 'proxy'];

export interface StorageCredential {
  kind: 'macaroon' | 'bearer';
  secret: string;
  /** Where it came from (a file, BEARER_TOKEN, the refresh command): safe to print */
  source: string;
  expiresAt?: Date;
}

export interface CredentialConfig {
  env: NodeJS.ProcessEnv;
  /** The macaroons file (macaroon-file.ts) */
  macaroonsFile: string;
  /** A command whose standard output is a fresh bearer token (run without a shell) */
  refreshCommand?: string[];
  /** A credential must live at least this much longer when a transfer starts */
  minLifetimeS: number;
  /** How long to wait for a refresher to rewrite a credential file */
  waitS: number;
  log: Logger;
}

/** URLs these credentials can be sent to. */
const WEB_SCHEMES = /^(https?|davs?):/i;

export class StorageCredentials {
  /** The last token the refresh command gave (it may be newer than any file) */
  private refreshed: { credential: StorageCredential; at: number } | null = null;

  constructor(private readonly config: CredentialConfig) {}

  /** The credential for a URL now: a macaroon for its site, else a bearer token; null when none. */
  find(url: string): StorageCredential | null {
    if (!WEB_SCHEMES.test(url)) return null;
    const target = new URL(url.replace(/^dav(s?):/i, 'http$1:'));
    const mac = macaroonForUrl(readMacaroons(this.config.macaroonsFile), target);
    if (mac) {
      const expiresAt = mac.validUntil ? new Date(mac.validUntil) : parseMacaroon(mac.content).expiresAt;
      return { kind: 'macaroon', secret: mac.content, source: `${this.config.macaroonsFile} (${mac.site})`, ...(expiresAt ? { expiresAt } : {}) };
    }
    const found = discoverBearerToken(this.config.env);
    // The refresh command's token until the file is rewritten after it.
    const fileIsNewer = found?.file !== undefined && this.refreshed !== null && mtimeMs(found.file) > this.refreshed.at;
    const best = this.refreshed && !fileIsNewer ? this.refreshed.credential : found ? { kind: 'bearer' as const, secret: found.token, source: found.source, ...(found.expiresAt ? { expiresAt: found.expiresAt } : {}) } : null;
    if (best) registerSecret(best.secret);
    return best;
  }

  /** Request headers for a URL (none when no credential applies). */
  headers(url: string): Record<string, string> {
    const c = this.find(url);
    return c ? { Authorization: `Bearer ${c.secret}` } : {};
  }

  /** Environment for gfal: gfal2 sends BEARER_TOKEN as `Authorization: Bearer` (macaroons are bearer tokens to dCache). */
  gfalEnv(url: string): NodeJS.ProcessEnv {
    const c = this.find(url);
    return c ? { BEARER_TOKEN: c.secret } : {};
  }

  /**
   * Before a transfer attempt: the credential for `url`, refreshed when it would expire within
   * the minimum lifetime, or always with `fresh` (the last attempt was refused). Throws a
   * NodeFault (the token goes back) when `required` names kinds of which none is usable.
   */
  async prepare(url: string, opts: { fresh?: boolean; required?: readonly AuthKind[]; signal?: AbortSignal; log?: Logger } = {}): Promise<StorageCredential | null> {
    let c = this.find(url);
    if (c && (opts.fresh || lifetime(c) < this.config.minLifetimeS)) {
      (opts.log ?? this.config.log).info({ credential: c.kind, source: c.source, secondsLeft: Math.round(lifetime(c)), fresh: opts.fresh === true }, 'refreshing the storage credential');
      await this.refresh(c, opts.signal);
      c = this.find(url);
    }
    const required = (opts.required ?? []).filter((k) => k !== 'proxy');
    if (required.length > 0 && (!c || !required.includes(c.kind) || lifetime(c) < this.config.minLifetimeS)) {
      const what = c && required.includes(c.kind) ? `${c.kind} from ${c.source} has ${formatSeconds(Math.max(0, Math.round(lifetime(c))))} left, less than ${formatSeconds(this.config.minLifetimeS)}` : `no ${required.join(' or ')} for ${new URL(url.replace(/^dav(s?):/i, 'http$1:')).host}`;
      throw new NodeFault('no usable credential', EXIT.credentials, `${what}: ${HINT}`);
    }
    return c;
  }

  private async refresh(c: StorageCredential, signal?: AbortSignal): Promise<void> {
    const [cmd, ...args] = this.config.refreshCommand ?? [];
    if (c.kind === 'bearer' && cmd) {
      const { stdout } = await execa(cmd, args, { env: this.config.env, stdin: 'ignore', stderr: 'ignore', timeout: 60_000, ...(signal ? { cancelSignal: signal } : {}) }).catch((err: unknown) => {
        // The command's output may hold a token: only its exit is reported.
        throw new NodeFault('no usable credential', EXIT.credentials, `token refresh command ${cmd} failed (${(err as { exitCode?: number }).exitCode ?? 'no exit code'})`);
      });
      const token = stdout.trim();
      if (!token || /\s/.test(token)) throw new NodeFault('no usable credential', EXIT.credentials, `token refresh command ${cmd} printed no token`);
      registerSecret(token);
      const exp = discoverBearerToken({ BEARER_TOKEN: token })?.expiresAt;
      this.refreshed = { credential: { kind: 'bearer', secret: token, source: `refresh command ${cmd}`, ...(exp ? { expiresAt: exp } : {}) }, at: Date.now() };
      return;
    }
    // No command: a refresher (oidc-agent's loop, a new `tokenpool stage` run) rewrites the file.
    const file = c.kind === 'macaroon' ? this.config.macaroonsFile : c.source;
    if (!fs.existsSync(file)) return;
    const before = fs.statSync(file).mtimeMs;
    const until = Date.now() + this.config.waitS * 1000;
    while (Date.now() < until && !signal?.aborted) {
      await new Promise((r) => setTimeout(r, 250));
      if (fs.existsSync(file) && fs.statSync(file).mtimeMs !== before) return;
    }
  }
}

const HINT = 'put macaroons in the macaroons file (tokenpool stage --method stageit writes them), or a WLCG token where BEARER_TOKEN / BEARER_TOKEN_FILE / $XDG_RUNTIME_DIR/bt_u<uid> / /tmp/bt_u<uid> point, or give --token-refresh-command';

/** Seconds a credential has left (a long time when it names no expiry). */
function lifetime(c: StorageCredential): number {
  return c.expiresAt ? (c.expiresAt.getTime() - Date.now()) / 1000 : Number.MAX_SAFE_INTEGER;
}

function mtimeMs(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** A refusal of the credential (401/403), which a fresh credential may cure. */
export function isAuthFailure(causeText: string): boolean {
  return /^(401|403)\b|Permission denied|\b40[13]\b/i.test(causeText);
}
