/**
 * Turns what nano throws (HTTP errors from CouchDB, connection failures from fetch) into a
 * DatabaseError that tells the user what is wrong and what to do, without URLs' credentials.
 */
import type { Pool } from './client.js';
import { DatabaseError, NoDatabaseError, NotAuthorisedError, TokenpoolError, UnreachableError } from './errors.js';
import { NO_ANSWER } from './deadline.js';
import { ROLES } from './security.js';

export interface DbErrorContext {
  /** Database URL without credentials */
  url: string;
  /** What we were doing, e.g. "write tokens" */
  action: string;
  /** The role the action needs, named in a 403 message */
  role?: string;
  /** Whether credentials were given at all */
  authenticated?: boolean;
}

/** The `role` to name when an action needs CouchDB's server admin rather than a pool role. */
export const SERVER_ADMIN = 'server admin';

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', NO_ANSWER]);

export function httpStatus(err: unknown): number | undefined {
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

export const isConflict = (err: unknown): boolean => httpStatus(err) === 409;
export const isNotFound = (err: unknown): boolean => httpStatus(err) === 404;

/** Why the server could not be reached, if that is what happened (nano flattens fetch's cause into its message). */
function networkCode(err: unknown): string | undefined {
  let e = err as { code?: unknown; cause?: unknown; message?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (typeof e.code === 'string' && UNREACHABLE_CODES.has(e.code)) return e.code;
    const flattened = typeof e.message === 'string' ? /error happened in your connection\. Reason: (.*)$/s.exec(e.message) : null;
    if (flattened) return /\b(E[A-Z_]{3,})\b/.exec(flattened[1]!)?.[1] ?? flattened[1]!.replace(/^(Type)?Error: /, '').trim();
    e = e.cause as typeof e;
  }
  return undefined;
}

function reasonOf(err: unknown): string {
  const e = err as { reason?: unknown; description?: unknown; message?: unknown };
  return String(e.reason ?? e.description ?? e.message ?? err);
}

export function translateDbError(err: unknown, ctx: DbErrorContext): TokenpoolError {
  if (err instanceof TokenpoolError) return err;
  const code = networkCode(err);
  if (code === NO_ANSWER) return noAnswer(ctx.url, err);
  if (code) {
    return new DatabaseError(`cannot reach ${ctx.url}: is the server running? (${code})`, 'Check --db (TOKENPOOL_DB) and that the database server is up.');
  }
  const status = httpStatus(err);
  const reason = reasonOf(err);
  // Apache CouchDB answers 401 also to a logged-in user who is not a server admin ("You are not a server admin.").
  const lacksRole = status === 403 || (status === 401 && ctx.authenticated !== false && !/name or password is incorrect/i.test(reason));
  switch (lacksRole ? 403 : status) {
    case 401:
      return ctx.authenticated === false
        ? new NotAuthorisedError(`${ctx.url} needs credentials to ${ctx.action}`, 'Pass --credentials FILE (TOKENPOOL_CREDENTIALS) or set TOKENPOOL_USER and TOKENPOOL_PASSWORD.')
        : new NotAuthorisedError(`wrong credentials for ${ctx.url} (name or password is incorrect)`, 'Check the name and password in --credentials, or TOKENPOOL_USER/TOKENPOOL_PASSWORD.');
    case 403:
      if (LOCKED_OUT.test(reason)) return lockedOut(ctx.url);
      if (reason.startsWith('invalid token')) return new DatabaseError(`the pool refused to ${ctx.action}: ${reason}`);
      return new NotAuthorisedError(
        `your account lacks the role ${ctx.role ?? ROLES.manager} needed to ${ctx.action} on ${ctx.url} (${reason})`,
        ctx.role === SERVER_ADMIN
          ? 'Use the server admin credentials (the embedded server keeps them in admin.json in its data directory).'
          : `Ask a pool manager to run: tokenpool db user add NAME --role ${roleKey(ctx.role)}`,
      );
    case 404:
      return new NoDatabaseError(`database ${ctx.url} does not exist (${reason})`, 'Create it with: tokenpool db init --db URL --credentials ADMIN_FILE');
    case undefined:
      return new DatabaseError(`could not ${ctx.action} on ${ctx.url}: ${reason}`);
    default:
      return new DatabaseError(`could not ${ctx.action} on ${ctx.url}: HTTP ${status}: ${reason}`);
  }
}

/** CouchDB 3's answer to an account with too many refused logins in a row (chttpd_auth_lockout). */
export const LOCKED_OUT = /account is temporarily locked/i;

export function lockedOut(url: string): NotAuthorisedError {
  return new NotAuthorisedError(
    `${url} has locked this account out for a while after several refused logins (a wrong password used repeatedly)`,
    'Fix the password in --credentials (or TOKENPOOL_USER/TOKENPOOL_PASSWORD), then wait: CouchDB lifts it 5 minutes after the first refused login by default ([chttpd_auth_lockout] max_lifetime).',
  );
}

/** A server that took the connection and then said nothing, nor to a look at its root (server/deadline.ts). */
export function noAnswer(url: string, err: unknown): UnreachableError {
  const seconds = /within ([\d.]+) s/.exec(String((err as { message?: unknown })?.message ?? ''))?.[1];
  return new UnreachableError(
    `no answer from ${url}${seconds ? ` within ${seconds} s` : ''}: the server accepts connections but does not answer (a stuck proxy or load balancer in front of it, or a hung server)`,
    'Check the server and what is in front of it; --db-timeout S (TOKENPOOL_DB_TIMEOUT) waits longer before giving up.',
  );
}

function roleKey(role: string | undefined): string {
  const found = Object.entries(ROLES).find(([, name]) => name === role);
  return found ? found[0] : 'manager';
}

/** Runs one database step and translates its failure. */
export async function withDb<T>(pool: Pool, action: string, fn: () => Promise<T>, opts: { role?: string } = {}): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw translateDbError(err, { url: pool.displayUrl, action, role: opts.role, authenticated: pool.credentials !== null });
  }
}
