/**
 * `_changes?feed=longpoll|continuous` as CouchDB serves them. The engine ignores `timeout` (a longpoll
 * with no change never answers, a continuous feed never ends) and sends a longpoll's backlog in one
 * block, so the front serves these feeds itself: the backlog from the engine's normal feed in batches,
 * then the engine's continuous feed for what comes next, with CouchDB's timeout and heartbeat rules.
 */
import http from 'node:http';
import type { Logger } from '../log.js';
import { callEngine, type Upstream } from './upstream.js';

const BACKLOG_BATCH = 1000;
const DEFAULT_TIMEOUT_MS = 60_000;
const FEED_PARAMS = ['feed', 'timeout', 'heartbeat', 'since', 'limit'];

interface Change {
  seq: string | number;
  [k: string]: unknown;
}

export function isChangesFeed(method: string, segments: string[], search: URLSearchParams): boolean {
  if (segments.length !== 2 || segments[1] !== '_changes' || !['GET', 'HEAD', 'POST'].includes(method)) return false;
  const feed = search.get('feed');
  return (feed === 'longpoll' || feed === 'continuous') && !search.has('descending') && search.getAll('feed').length === 1;
}

function numberParam(v: string | null): number | undefined {
  if (v === null || !/^\d{1,12}$/.test(v)) return undefined;
  return Number(v);
}

export class ChangesFeeds {
  /** Ends every open feed cleanly (shutdown): continuous feeds get their closing last_seq line. */
  private readonly finishers = new Set<() => void>();

  constructor(
    private readonly up: Upstream,
    private readonly log: Logger,
  ) {}

  endAll(): void {
    for (const finish of [...this.finishers]) finish();
  }

  async serve(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    db: string,
    search: URLSearchParams,
    headers: http.OutgoingHttpHeaders,
    body: Buffer | undefined,
    authenticated: boolean,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    const continuous = search.get('feed') === 'continuous';
    const hb = search.get('heartbeat');
    const heartbeatMs = hb === null ? undefined : hb === 'true' ? DEFAULT_TIMEOUT_MS : numberParam(hb);
    // CouchDB: a heartbeat keeps the feed open for good; otherwise it ends after `timeout` ms without a change.
    const timeoutMs = heartbeatMs !== undefined ? undefined : (numberParam(search.get('timeout')) ?? DEFAULT_TIMEOUT_MS);
    const limit = numberParam(search.get('limit'));
    const base = new URLSearchParams();
    for (const [k, v] of search) if (!FEED_PARAMS.includes(k)) base.append(k, v);
    const dbPath = `/${encodeURIComponent(db)}/_changes`;
    const path = (extra: Record<string, string>) => {
      const p = new URLSearchParams(base);
      for (const [k, v] of Object.entries(extra)) p.set(k, v);
      return `${dbPath}?${p.toString()}`;
    };

    if (method === 'HEAD') {
      // The engine would hold a HEAD longpoll open for good: answer with the headers of the normal feed.
      const reply = await callEngine(this.up, 'GET', path({ since: search.get('since') ?? '0', limit: '1' }), headers);
      res.writeHead(reply.status === 401 && authenticated ? 403 : reply.status, { 'content-type': 'application/json', 'cache-control': 'must-revalidate' });
      res.end();
      return;
    }
    let since = search.get('since') ?? '0';
    let sent = 0;
    // The backlog: a longpoll answers at once if there is any; a continuous feed streams it in batches.
    for (;;) {
      const batch = continuous ? Math.min(BACKLOG_BATCH, limit === undefined ? Infinity : limit - sent) : limit;
      const extra: Record<string, string> = { since };
      if (batch !== undefined) extra.limit = String(batch);
      const reply = await callEngine(this.up, method, path(extra), headers, body);
      if (reply.status !== 200) {
        const status = reply.status === 401 && authenticated ? 403 : reply.status;
        res.writeHead(status, { 'content-type': reply.headers['content-type'] ?? 'application/json' });
        res.end(reply.body);
        return;
      }
      const feed = JSON.parse(reply.body) as { results: Change[]; last_seq: string | number };
      since = String(feed.last_seq);
      if (!continuous) {
        if (feed.results.length > 0 || limit === 0) {
          sendJson(res, feed);
          return;
        }
        break;
      }
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'must-revalidate' });
      for (const change of feed.results) res.write(JSON.stringify(change) + '\n');
      sent += feed.results.length;
      if (limit !== undefined && sent >= limit) {
        res.end(JSON.stringify({ last_seq: feed.last_seq }) + '\n');
        return;
      }
      if (feed.results.length < (batch ?? Infinity) || feed.results.length === 0) break;
    }
    await this.follow({ req, res, method, headers, body, since, sent, limit, continuous, heartbeatMs, timeoutMs, path });
  }

  /** Waits on the engine's own continuous feed from `since` for what comes next. */
  private follow(f: {
    req: http.IncomingMessage;
    res: http.ServerResponse;
    method: string;
    headers: http.OutgoingHttpHeaders;
    body: Buffer | undefined;
    since: string;
    sent: number;
    limit: number | undefined;
    continuous: boolean;
    heartbeatMs: number | undefined;
    timeoutMs: number | undefined;
    path: (extra: Record<string, string>) => string;
  }): Promise<void> {
    const { res } = f;
    let lastSeq: string | number = /^\d+$/.test(f.since) ? Number(f.since) : f.since;
    let sent = f.sent;
    return new Promise<void>((resolve) => {
      let upstream: http.ClientRequest | null = null;
      let timeout: NodeJS.Timeout | undefined;
      let heartbeat: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (changes: Change[] = []) => {
        if (done) return;
        done = true;
        clearTimeout(timeout);
        clearInterval(heartbeat);
        this.finishers.delete(finishNow);
        upstream?.destroy();
        if (!res.destroyed) {
          if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'must-revalidate' });
          if (f.continuous) res.end(JSON.stringify({ last_seq: lastSeq }) + '\n');
          else res.end(JSON.stringify({ results: changes, last_seq: lastSeq }) + '\n');
        }
        resolve();
      };
      const finishNow = () => finish();
      this.finishers.add(finishNow);
      const armTimeout = () => {
        if (f.timeoutMs === undefined) return;
        clearTimeout(timeout);
        timeout = setTimeout(finishNow, f.timeoutMs);
      };
      armTimeout();
      if (f.heartbeatMs !== undefined) {
        // Headers go out now so that heartbeat newlines can follow (CouchDB does the same).
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'must-revalidate' });
        heartbeat = setInterval(() => res.write('\n'), Math.max(f.heartbeatMs, 100));
      }
      res.on('close', () => {
        if (!done) {
          done = true;
          clearTimeout(timeout);
          clearInterval(heartbeat);
          this.finishers.delete(finishNow);
          upstream?.destroy();
          resolve();
        }
      });
      const onChange = (change: Change) => {
        lastSeq = change.seq;
        if (!f.continuous) {
          finish([change]);
          return;
        }
        res.write(JSON.stringify(change) + '\n');
        sent++;
        armTimeout();
        if (f.limit !== undefined && sent >= f.limit) finish();
      };
      const extra: Record<string, string> = { feed: 'continuous', since: f.since, heartbeat: '10000' };
      if (f.limit !== undefined) extra.limit = String(f.limit - sent);
      this.up
        .port()
        .then((port) => {
          if (done) return;
          const h: http.OutgoingHttpHeaders = { accept: 'application/json', ...f.headers, 'accept-encoding': 'identity' };
          if (f.body) h['content-length'] = f.body.length;
          upstream = http.request({ host: '127.0.0.1', port, method: f.method, path: f.path(extra), headers: h, agent: false }, (up) => {
            if (up.statusCode !== 200) {
              up.resume();
              finish();
              return;
            }
            let buffered = '';
            up.setEncoding('utf8');
            up.on('data', (chunk: string) => {
              buffered += chunk;
              let nl: number;
              while (!done && (nl = buffered.indexOf('\n')) >= 0) {
                const line = buffered.slice(0, nl).trim();
                buffered = buffered.slice(nl + 1);
                if (!line) continue;
                let change: Change;
                try {
                  change = JSON.parse(line) as Change;
                } catch {
                  continue;
                }
                if (change.seq !== undefined && typeof change.id === 'string') onChange(change);
              }
            });
            up.on('end', finishNow);
            up.on('error', finishNow);
          });
          upstream.on('error', (err) => {
            if (!done) this.log.warn({ err: err.message }, 'engine changes feed failed; ending the feed');
            finishNow();
          });
          upstream.end(f.body);
        })
        .catch(finishNow);
    });
  }
}

function sendJson(res: http.ServerResponse, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'must-revalidate', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
