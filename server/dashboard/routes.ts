/**
 * The dashboard's HTTP routes under one prefix: the page, its assets and read-only JSON queries.
 * Every route answers GET only and reaches the database through a PoolReader (GET only), so the
 * dashboard cannot change the pool; credentials stay on the server side.
 */
import type http from 'node:http';
import { InputError, StateError, TokenpoolError } from '../errors.js';
import { redactText } from '../redact.js';
import { RefusedError, type PoolReader } from '../status/reader.js';
import { listTokens, listTokensInStatus, tokenDetail } from '../status/tokens.js';
import { dashboardSummary } from './summary.js';
import { statusReport } from '../status/report.js';
import { pilotPanel } from './pilots.js';
import { filterOf, FILTER_PARAMS, numberParam, onlyParams } from './query.js';
import { asset, indexHtml, pageHtml } from './static.js';
import type { LiveChannels } from './live.js';
import { SharedAnswers } from './shared.js';
import type { DashboardSummary } from './types.js';

/** Within a second of each other, pages and status watchers that ask the same summary share one answer (the live stream's pace). */
const SUMMARY_FRESH_MS = 1000;

/** Answers shared until the pool changes or SUMMARY_FRESH_MS pass: the page's summary, and `tokenpool status`'s report as sent. */
interface Shared {
  summaries: SharedAnswers<DashboardSummary>;
  reports: SharedAnswers<string>;
}

export const DASHBOARD_PREFIX = '/_tokenpool/dashboard';

export interface ResolvedDb {
  reader: PoolReader;
  /** identifies the database and credential, for sharing one changes watcher */
  key: string;
}

export interface DashboardSource {
  /** The database to read for this request; 'unauthorized' asks the browser for credentials; null: not served here. */
  resolve(req: http.IncomingMessage, db: string): ResolvedDb | 'unauthorized' | null;
  /** Databases to list on the index page; undefined when a single database is served (the index redirects to it). */
  listDbs?(req: http.IncomingMessage): Promise<string[]> | 'unauthorized';
  single?: string;
  /** true when the browser's own credentials are used: a refusal then asks it to log in again */
  browserCredentials: boolean;
}

const MAX_PAGE = 200;
/** the throughput chart reaches back at most two weeks */
const MAX_HOURS = 24 * 14;

export function dashboardHandler(source: DashboardSource, live: LiveChannels, prefix = DASHBOARD_PREFIX) {
  const shared: Shared = { summaries: new SharedAnswers(SUMMARY_FRESH_MS), reports: new SharedAnswers(SUMMARY_FRESH_MS) };
  live.onPoolChange((key) => {
    shared.summaries.forget(key);
    shared.reports.forget(key);
  });
  return async (req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> => {
    const url = new URL(req.url ?? '/', 'http://dashboard');
    if (url.pathname !== prefix && !url.pathname.startsWith(`${prefix}/`)) return false;
    req.resume();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'application/json', JSON.stringify({ error: 'method_not_allowed', reason: 'The dashboard is read-only: GET only.' }), { allow: 'GET, HEAD' });
      return true;
    }
    try {
      await route(req, res, url, source, live, shared, prefix);
    } catch (err) {
      sendError(res, err, source.browserCredentials);
    }
    return true;
  };
}

async function route(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  source: DashboardSource,
  live: LiveChannels,
  shared: Shared,
  prefix: string,
): Promise<void> {
  let segments: string[];
  try {
    segments = url.pathname.slice(prefix.length).split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    throw new InputError('malformed path');
  }
  if (segments.length === 0) {
    if (source.single) return redirect(res, `${prefix}/${encodeURIComponent(source.single)}/`);
    const dbs = source.listDbs?.(req);
    if (dbs === 'unauthorized') return askForCredentials(res);
    return send(res, 200, 'text/html; charset=utf-8', indexHtml(prefix, (await dbs) ?? []));
  }
  const [db, kind, name, ...more] = segments as [string, ...string[]];
  if (db === 'assets' && kind !== undefined && name === undefined) {
    const a = asset(kind);
    if (!a) throw new StateError(`no asset ${kind}`);
    return send(res, 200, a.type, a.body, { 'cache-control': 'no-cache' });
  }
  const resolved = source.resolve(req, db);
  if (resolved === 'unauthorized') return askForCredentials(res);
  if (resolved === null) throw new StateError(`the dashboard does not serve a database named ${db}`);
  if (kind === undefined) {
    if (!url.pathname.endsWith('/')) return redirect(res, `${url.pathname}/`);
    return send(res, 200, 'text/html; charset=utf-8', pageHtml(prefix, db), { 'cache-control': 'no-store' });
  }
  if (kind !== 'api') throw new StateError(`no page ${kind}`);
  const q = url.searchParams;
  const { reader } = resolved;
  switch (name) {
    case 'summary': {
      onlyParams(q, 'summary', [...FILTER_PARAMS, 'hours']);
      const filter = filterOf(q);
      const hours = numberParam(q, 'hours', 6, 1, MAX_HOURS, true);
      return sendJsonBody(res, await shared.summaries.get(resolved.key, JSON.stringify([filter, hours]), () => dashboardSummary(reader, filter, hours * 3600)));
    }
    case 'status': {
      // `tokenpool status --watch` reads this instead of querying the views itself: twenty watchers cost one report a second.
      onlyParams(q, 'status', ['obsid', 'step']);
      const { obsid, step } = filterOf(q);
      const text = await shared.reports.get(resolved.key, JSON.stringify([obsid, step]), async () => redactText(JSON.stringify(await statusReport(reader, { obsid, step }))));
      return send(res, 200, 'application/json', text, { 'cache-control': 'no-store' });
    }
    case 'tokens': {
      onlyParams(q, 'tokens', [...FILTER_PARAMS, 'limit', 'after']);
      const { obsid, step, status } = filterOf(q);
      if (status === null) throw new InputError('tokens needs a status', 'Add status=<status>, e.g. status=error.');
      const limit = numberParam(q, 'limit', 50, 1, MAX_PAGE, true);
      const after = q.get('after') || null;
      if (obsid !== null && step !== null) return sendJsonBody(res, await listTokens(reader, { obsid, step, status, limit, after }));
      if (obsid !== null || step !== null) {
        throw new InputError('tokens lists one observation × step, or a status across the pool', 'Give both obsid and step, or neither.');
      }
      return sendJsonBody(res, await listTokensInStatus(reader, { status, limit, after }));
    }
    case 'pilots': {
      onlyParams(q, 'pilots', ['limit']);
      return sendJsonBody(res, await pilotPanel(reader, numberParam(q, 'limit', 20, 1, MAX_PAGE, true)));
    }
    case 'token': {
      onlyParams(q, 'token', []);
      if (more.length !== 1) throw new InputError('ask for /api/token/<token id>');
      return sendJsonBody(res, await tokenDetail(reader, more[0]!));
    }
    case 'events':
      return live.subscribe(resolved.key, reader, res);
    default:
      throw new StateError(`no query ${name ?? ''}`);
  }
}

function askForCredentials(res: http.ServerResponse): void {
  send(res, 401, 'application/json', JSON.stringify({ error: 'unauthorized', reason: 'Log in with an account that may read the pool.' }), {
    'www-authenticate': 'Basic realm="tokenpool dashboard", charset="UTF-8"',
  });
}

function redirect(res: http.ServerResponse, location: string): void {
  send(res, 302, 'text/plain', `see ${location}\n`, { location });
}

function sendJsonBody(res: http.ServerResponse, body: unknown): void {
  send(res, 200, 'application/json', redactText(JSON.stringify(body)), { 'cache-control': 'no-store' });
}

function sendError(res: http.ServerResponse, err: unknown, browserCredentials: boolean): void {
  if (err instanceof RefusedError && browserCredentials) return askForCredentials(res);
  const status = err instanceof InputError ? 400 : err instanceof StateError ? 404 : 502;
  const message = err instanceof TokenpoolError ? err.message : `dashboard query failed: ${(err as Error).message}`;
  const hint = err instanceof TokenpoolError && err.hint ? { hint: redactText(err.hint) } : {};
  const error = status === 502 ? 'bad_gateway' : status === 404 ? 'not_found' : 'bad_request';
  send(res, status, 'application/json', JSON.stringify({ error, reason: redactText(message), ...hint }));
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'x-content-type-options': 'nosniff', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
