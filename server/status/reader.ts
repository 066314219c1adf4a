/**
 * Read-only access to one pool database over HTTP. Status, failures and the dashboard reach the
 * database only through this: it can issue nothing but GET, so a dashboard route can never change
 * a token whatever a browser sends it.
 */
import http from 'node:http';
import https from 'node:https';
import { DatabaseError, StateError } from '../errors.js';
import type { Pool } from '../client.js';

export type QueryValue = string | number | boolean | null | readonly unknown[] | Record<string, unknown>;

/** Query parameters CouchDB expects as JSON (keys of views); everything else is sent as text. */
const JSON_PARAMS = new Set(['key', 'keys', 'startkey', 'endkey', 'start_key', 'end_key']);

/** The database answered 401 or 403: the credentials used do not allow reading. */
export class RefusedError extends DatabaseError {
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
  dbName: string;
  /** Authorization header value, or null for anonymous */
  authorization: string | null;
}

export const DESIGN = 'tokenpool';

export function readerFromPool(pool: Pool): PoolReader {
  return createReader({ dbUrl: pool.displayUrl, dbName: pool.dbName, authorization: pool.authorization });
}

export function createReader(opts: ReaderOptions): PoolReader {
  const base = opts.dbUrl.replace(/\/$/, '');
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.authorization) headers.authorization = opts.authorization;

  async function getReply(path: string, query: Record<string, QueryValue | undefined> | undefined, signal?: AbortSignal): Promise<Reply> {
    const url = new URL(`${base}/${path}`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      url.searchParams.set(k, JSON_PARAMS.has(k) || typeof v === 'object' ? JSON.stringify(v) : String(v));
    }
    let res: Reply;
    try {
      res = await httpGet(url, headers, signal);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new DatabaseError(`cannot reach the database at ${opts.dbUrl}: ${(err as Error).message}`, 'Check --db and that the server is running.');
    }
    if (res.status >= 300) failure(res, path);
    return res;
  }

  function failure(res: Reply, path: string): never {
    let reason = '';
    try {
      const body = JSON.parse(res.body) as { error?: string; reason?: string };
      reason = body.reason ?? body.error ?? '';
    } catch {
      // body was not JSON; the status says enough
    }
    if (res.status === 401 || res.status === 403) {
      throw new RefusedError(res.status, `the database refused us (${res.status}): ${reason}`);
    }
    if (res.status === 404 && /database does not exist|no_db_file/i.test(reason)) {
      throw new StateError(`there is no database ${opts.dbName} at ${opts.dbUrl}`, 'Check --db, or create the pool: tokenpool db init --db URL --credentials ADMIN_FILE');
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

interface Reply {
  status: number;
  body: string;
}

const keepAlive = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * One GET with node:http rather than fetch: fetch gives up after 300 s without response headers,
 * and the first query of a view on a large pool waits for the index build (minutes at 100k tokens).
 */
function httpGet(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<Reply> {
  const secure = url.protocol === 'https:';
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(url, { method: 'GET', headers, signal, agent: secure ? keepAlive.https : keepAlive.http }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Encodes a document id for a URL path (design documents keep their slash). */
export function docPath(id: string): string {
  return id.startsWith('_design/') ? `_design/${encodeURIComponent(id.slice(8))}` : encodeURIComponent(id);
}
