/**
 * Read-only access to one pool database over HTTP. Status, failures and the dashboard reach the
 * database only through this: it can issue nothing but GET, so a dashboard route can never change
 * a token whatever a browser sends it.
 */
import http from 'node:http';
import https from 'node:https';
import { DatabaseError, NoDatabaseError, NotAuthorisedError, StateError, UnreachableError } from '../errors.js';
import type { Pool } from '../client.js';
import { DEFAULT_DB_TIMEOUT_S, NoAnswerError, watchAnswer } from '../deadline.js';
import { LOCKED_OUT, lockedOut, noAnswer } from '../db-errors.js';

export type QueryValue = string | number | boolean | null | readonly unknown[] | Record<string, unknown>;

/** Query parameters CouchDB expects as JSON (keys of views); everything else is sent as text. */
const JSON_PARAMS = new Set(['key', 'keys', 'startkey', 'endkey', 'start_key', 'end_key']);

/** The database answered 401 or 403: the credentials used do not allow reading. */
export class RefusedError extends NotAuthorisedError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message, 'Check --credentials: the account needs read access to the database.');
  }
}

export interface ViewRow<K = unknown, V = unknown> {
  id?: string;
  key: K;
  value: V;
  doc?: Record<string, unknown>;
}

export interface ChangesAnswer {
  last_seq: string | number;
  results: { id: string; seq: string | number }[];
}

export interface PoolReader {
  /** database name, for display */
  readonly dbName: string;
  get<T>(path: string, query?: Record<string, QueryValue | undefined>, signal?: AbortSignal): Promise<T>;
  getText(path: string, signal?: AbortSignal): Promise<string>;
  view<K = unknown, V = unknown>(design: string, view: string, query?: Record<string, QueryValue | undefined>): Promise<ViewRow<K, V>[]>;
}

export interface ReaderOptions {
  /** database URL without credentials, e.g. http://127.0.0.1:5984/lofar */
  dbUrl: string;
  /** how an unreachable server is named in messages, when not dbUrl (a route beside the database) */
  shownAs?: string;
  dbName: string;
  /** Authorization header value, or null for anonymous */
  authorization: string | null;
  /** silence after which the server is asked whether it is alive (server/deadline.ts); default --db-timeout's */
  quietMs?: number;
}

export const DESIGN = 'tokenpool';

export function readerFromPool(pool: Pool): PoolReader {
  return createReader({ dbUrl: pool.displayUrl, dbName: pool.dbName, authorization: pool.authorization, quietMs: pool.quietMs });
}

export function createReader(opts: ReaderOptions): PoolReader {
  const base = opts.dbUrl.replace(/\/$/, '');
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.authorization) headers.authorization = opts.authorization;
  const quietMs = opts.quietMs ?? DEFAULT_DB_TIMEOUT_S * 1000;
  const login = opts.authorization ? new LoginGate() : null;
  const throughLogin = (send: () => Promise<Reply>) => (login ? login.send(send) : send());

  async function getReply(path: string, query: Record<string, QueryValue | undefined> | undefined, signal?: AbortSignal): Promise<Reply> {
    const url = new URL(`${base}/${path}`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      url.searchParams.set(k, JSON_PARAMS.has(k) || typeof v === 'object' ? JSON.stringify(v) : String(v));
    }
    const known = tagged.get(url.href);
    let res: Reply;
    try {
      res = await throughLogin(() => httpGet(url, known ? { ...headers, 'if-none-match': known.etag } : headers, quietMs, signal));
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof NoAnswerError) throw noAnswer(opts.shownAs ?? opts.dbUrl, err);
      throw new UnreachableError(`cannot reach the database at ${opts.shownAs ?? opts.dbUrl}: ${(err as Error).message}`, 'Check --db and that the server is running.');
    }
    if (res.status === 304 && known) return { status: 200, body: known.body };
    if (res.status >= 300) failure(res, path);
    if (res.etag) remember(url.href, { etag: res.etag, body: res.body });
    return res;
  }

  // Answers by entity tag (CouchDB's views and the embedded front's stored ones carry one): a
  // watcher asking the same again gets a 304 while nothing changed, which costs the server no JSON.
  const tagged = new Map<string, { etag: string; body: string }>();
  function remember(href: string, answer: { etag: string; body: string }) {
    tagged.delete(href);
    if (tagged.size >= MAX_TAGGED) tagged.delete(tagged.keys().next().value!);
    tagged.set(href, answer);
  }

  function failure(res: Reply, path: string): never {
    let reason = '';
    try {
      const body = JSON.parse(res.body) as { error?: string; reason?: string };
      reason = body.reason ?? body.error ?? '';
    } catch {
      // body was not JSON; the status says enough
    }
    if (res.status === 403 && LOCKED_OUT.test(reason)) throw lockedOut(opts.shownAs ?? opts.dbUrl);
    if (res.status === 401 || res.status === 403) {
      throw new RefusedError(res.status, `the database refused us (${res.status}): ${reason}`);
    }
    if (res.status === 404 && /database does not exist|no_db_file/i.test(reason)) {
      throw new NoDatabaseError(`there is no database ${opts.dbName} at ${opts.dbUrl}`, 'Check --db, or create the pool: tokenpool db init --db URL --credentials ADMIN_FILE');
    }
    if (res.status === 404 && path.startsWith('_design/')) {
      throw new StateError(
        `the database ${opts.dbName} has no status views (${path.split('?')[0]}): ${reason}`,
        'Install them (it only adds what is missing): tokenpool db init --db URL --credentials ADMIN_FILE',
      );
    }
    if (res.status === 404 && !path.includes('/')) {
      throw new StateError(`not found: ${path} in ${opts.dbName}`);
    }
    throw new DatabaseError(`database answered ${res.status} for ${path.split('?')[0]}: ${reason}`);
  }

  return {
    dbName: opts.dbName,
    async get<T>(path: string, query?: Record<string, QueryValue | undefined>, signal?: AbortSignal): Promise<T> {
      return JSON.parse((await getReply(path, query, signal)).body) as T;
    },
    async getText(path: string, signal?: AbortSignal): Promise<string> {
      return (await getReply(path, undefined, signal)).body;
    },
    async view<K, V>(design: string, view: string, query?: Record<string, QueryValue | undefined>): Promise<ViewRow<K, V>[]> {
      const res = await getReply(`_design/${design}/_view/${view}`, query);
      return (JSON.parse(res.body) as { rows: ViewRow<K, V>[] }).rows;
    },
  };
}

/**
 * CouchDB 3 locks an account out for minutes after a few refused logins in a row (chttpd_auth_lockout),
 * and a report sends a dozen queries at once. So a reader's first request goes alone, the others wait for
 * its answer, and a refused login is answered from memory for a while instead of being sent again.
 */
class LoginGate {
  private first: Promise<Reply> | null = null;
  private accepted = false;
  private refusal: { reply: Reply; until: number } | null = null;

  async send(request: () => Promise<Reply>): Promise<Reply> {
    while (this.first) await this.first.catch(() => undefined);
    if (this.accepted) return request();
    if (this.refusal && Date.now() < this.refusal.until) return this.refusal.reply;
    const pending = (this.first = request());
    try {
      const reply = await pending;
      if (reply.status === 401) this.refusal = { reply, until: Date.now() + REFUSAL_KEPT_MS };
      else this.accepted = true;
      return reply;
    } finally {
      this.first = null;
    }
  }
}

/** a long-lived reader (a dashboard) tries a refused login again after this, in case the account was fixed */
const REFUSAL_KEPT_MS = 60_000;

interface Reply {
  status: number;
  body: string;
  etag?: string;
}

/** answers kept per reader for If-None-Match: a status summary asks about a dozen distinct queries */
const MAX_TAGGED = 64;

const keepAlive = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * One GET with node:http rather than fetch: fetch gives up after 300 s without response headers,
 * and the first query of a view on a large pool waits for the index build (minutes at 100k tokens).
 * What bounds the wait instead is the server's own word that it is alive (server/deadline.ts), which
 * also lets a longpoll feed stay open as long as it likes.
 */
function httpGet(url: URL, headers: Record<string, string>, quietMs: number, signal?: AbortSignal): Promise<Reply> {
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(url, { method: 'GET', headers, signal, agent: secure ? keepAlive.https : keepAlive.http }, (res) => {
      watch.progress();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => (watch.progress(), chunks.push(c)));
      res.on('end', () => (watch.done(), resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString('utf8'), etag: res.headers.etag })));
      res.on('error', fail);
    });
    const watch = watchAnswer(url.origin, quietMs, (err) => {
      fail(err);
      req.destroy();
    });
    function fail(err: Error) {
      watch.done();
      reject(err);
    }
    req.on('error', fail);
    req.end();
  });
}

/** Encodes a document id for a URL path (design documents keep their slash). */
export function docPath(id: string): string {
  return id.startsWith('_design/') ? `_design/${encodeURIComponent(id.slice(8))}` : encodeURIComponent(id);
}
