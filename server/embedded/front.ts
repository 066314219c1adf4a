/**
 * The embedded server's public face: an HTTP front on --host/--port that authenticates each request,
 * refuses what would crash or is not allowed (guard.ts), serves changes feeds (changes-feed.ts) and
 * view queries (stored-views.ts) itself, and proxies the rest to the engine child.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import type { AdminCredentials } from './credentials.js';
import { EngineSupervisor } from './supervisor.js';
import { isUserDbPath, judge, pathSegments, type UserCtx, type Verdict } from './guard.js';
import { SecurityCache } from './access.js';
import { callEngine, identityHeaders, type Upstream } from './upstream.js';
import { ChangesFeeds, isChangesFeed } from './changes-feed.js';
import { StoredViews } from './stored-views.js';
import { CONFLICT_BODY, docWrite, isDocWriteUrl, MAX_FENCED_BODY, StaleRevisions, type DocWrite, type SettleWrite } from './stale-revisions.js';
import { bulkDocs, bulkWritten, isBulkWriteUrl, MAX_BULK_BODY, mayWrite, writtenDoc, type WrittenDoc } from './db-writes.js';
import { DbGate } from './db-gate.js';
import { notModified, taggedAnswer } from './etag.js';
import type { JsonValue } from './collate.js';

/** Extra handlers mounted beside the CouchDB API (the dashboard); return true when handled. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface FrontOptions {
  host: string;
  port: number;
  admin: AdminCredentials;
  routes?: RouteHandler[];
}

const ANONYMOUS: UserCtx = { name: null, roles: [] };
const SESSION_TTL_MS = 30_000;
/** The CouchDB API level the embedded server speaks, and who serves it. */
const WELCOME = { couchdb: 'Welcome', version: '3.5.0', vendor: { name: 'tokenpool embedded server' }, features: [] as string[] };
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];
/** A POST to _changes carries a filter (doc_ids, selector): small. */
const MAX_FEED_BODY = 8 * 1024 * 1024;
/** Response header telling that the front answered a reduced view query from its stored index. */
export const STORED_REDUCE_HEADER = 'x-tokenpool-reduce';
/** Response header telling that the front answered a row listing (map rows) from its stored index. */
export const STORED_VIEW_HEADER = 'x-tokenpool-view';
/** Response header telling that the front answered a write's 409 itself (stale-revisions.ts). */
export const KNOWN_CONFLICT_HEADER = 'x-tokenpool-conflict';

export class Front {
  private server: http.Server | null = null;
  private readonly sessions = new Map<string, { user: UserCtx; until: number }>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  private readonly upstream: Upstream;
  private readonly feeds: ChangesFeeds;
  readonly views: StoredViews;
  private readonly security: SecurityCache;
  private readonly staleRevs = new StaleRevisions();
  private readonly gate = new DbGate();
  private engineGeneration = 0;

  constructor(
    private readonly engine: EngineSupervisor,
    private readonly log: Logger,
    private readonly opts: FrontOptions,
  ) {
    this.upstream = { port: () => engine.enginePort(), agent: this.agent };
    this.feeds = new ChangesFeeds(this.upstream, log);
    const adminAuth = 'Basic ' + Buffer.from(`${opts.admin.name}:${opts.admin.password}`).toString('base64');
    this.views = new StoredViews(this.upstream, adminAuth, () => engine.generation, log);
    this.security = new SecurityCache(this.upstream, adminAuth);
  }

  async listen(): Promise<AddressInfo> {
    const server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.error({ err: String(err), method: req.method, path: req.url }, 'request failed in the front');
        sendJson(res, 500, { error: 'internal_server_error', reason: 'tokenpool server: unexpected error, see its log.' });
      });
    });
    server.keepAliveTimeout = 65_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => resolve());
    });
    return server.address() as AddressInfo;
  }

  /** Stops accepting, ends changes feeds, lets requests in flight finish (bounded), closes idle keep-alive sockets. */
  async close(graceMs = 10_000): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.feeds.endAll();
    server.closeIdleConnections();
    // Keep-alive sockets that finish a request after this point must not linger either.
    server.on('request', (_req, res: http.ServerResponse) => res.setHeader('connection', 'close'));
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(timer);
    this.agent.destroy();
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    for (const route of this.opts.routes ?? []) {
      if (await route(req, res)) return;
    }
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    if ((method === 'GET' || method === 'HEAD') && /^\/_up\/?(\?|$)/.test(url)) {
      // CouchDB's health check for load balancers and start scripts: open to all, no engine round trip.
      drain(req);
      sendJson(res, 200, { status: 'ok', seeds: {} });
      return;
    }
    const user = await this.userOf(req);
    if (user === 'invalid') {
      drain(req);
      sendJson(res, 401, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
      return;
    }
    if ((method === 'GET' || method === 'HEAD') && /^\/(\?|$)/.test(url)) {
      // Clients (picasclient's couchdb module, Fauxton-style checks) accept a server that welcomes them as CouchDB does.
      drain(req);
      sendJson(res, 200, WELCOME);
      return;
    }
    const segments = pathSegments(url) ?? [];
    if (this.engine.generation !== this.engineGeneration) {
      // A restarted in-memory engine lost every database, security objects and documents included.
      this.security.forgetAll();
      this.staleRevs.forgetAll();
      this.engineGeneration = this.engine.generation;
    }
    const [db] = segments;
    if (db === undefined || db.startsWith('_')) {
      await this.judged(req, res, user, method, url, segments);
      return;
    }
    if (segments.length === 1 && (method === 'PUT' || method === 'DELETE')) {
      await this.gate.alone(db, () => {
        // What the front knew of the database's documents, views and readers ends here.
        this.views.forgetDb(db);
        this.security.forget(db);
        this.staleRevs.forgetDb(db);
        const answered = new Promise<void>((resolve) => res.once('close', resolve));
        return this.judged(req, res, user, method, url, segments).then(() => answered);
      });
      return;
    }
    const leave = await this.gate.enter(db);
    res.once('close', leave);
    try {
      await this.judged(req, res, user, method, url, segments);
    } catch (err) {
      leave();
      throw err;
    }
  }

  /** Answers what the request may not do, else serves it (on its database's turn: db-gate.ts). */
  private async judged(req: http.IncomingMessage, res: http.ServerResponse, user: UserCtx, method: string, url: string, segments: string[]): Promise<void> {
    let verdict: Verdict | null = judge(method, url, user);
    if (!verdict && user.name !== null && !user.roles.includes('_admin') && isUserDbPath(segments)) {
      const destination = typeof req.headers.destination === 'string' ? req.headers.destination : undefined;
      verdict = await this.security.check(user, method, segments, destination);
    }
    if (verdict) {
      drain(req);
      sendJson(res, verdict.status, { error: verdict.error, reason: verdict.reason });
      return;
    }
    const search = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
    const [db] = segments;
    if (db !== undefined && segments[1] === '_security' && method === 'PUT') {
      // Forget before and after the write: a check racing with it must not cache the old object.
      this.security.forget(db);
      this.views.forgetReaders(db);
      res.on('finish', () => {
        this.security.forget(db);
        this.views.forgetReaders(db);
      });
    }
    if (db !== undefined && isChangesFeed(method, segments, search)) {
      const body = method === 'POST' ? await readBody(req, MAX_FEED_BODY) : undefined;
      if (body === null) {
        sendJson(res, 413, { error: 'too_large', reason: `A _changes request body may hold at most ${MAX_FEED_BODY} bytes.` });
        return;
      }
      const headers = identityHeaders(req.headers);
      if (body) headers['content-type'] = req.headers['content-type'] ?? 'application/json';
      await this.feeds.serve(req, res, db, search, headers, body, user.name !== null);
      return;
    }
    if (method === 'GET' && segments.length === 5 && segments[1] === '_design' && segments[3] === '_view') {
      const answer = await this.views.answer(db!, segments[2]!, segments[4]!, search, identityHeaders(req.headers) as Record<string, string>);
      if (answer !== null) {
        drain(req);
        const stored = { [answer.kind === 'reduce' ? STORED_REDUCE_HEADER : STORED_VIEW_HEADER]: 'stored' };
        // Answers with documents are assembled per request (documents may be newer than rows): no tag.
        if (answer.withDocs) return sendJson(res, 200, answer.body, stored);
        const { text, etag } = taggedAnswer(answer.body);
        if (notModified(req, etag)) {
          res.writeHead(304, { etag, ...stored });
          res.end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), etag, ...stored });
        res.end(text);
        return;
      }
    }
    const write = await this.readDocWrite(req, method, segments, search);
    if (write?.doc) {
      const settle = await this.staleRevs.admit(write.doc);
      if (!settle) {
        sendJson(res, 409, CONFLICT_BODY, { [KNOWN_CONFLICT_HEADER]: 'known' });
        return;
      }
      write.settle = settle;
    }
    const writesTo = db !== undefined && !db.startsWith('_') && mayWrite(method, segments) ? db : undefined;
    await this.proxy(req, res, user, isDocumentWrite(method, segments), write, writesTo);
  }

  /**
   * A single-document write with its body read (when it has a small one), so that a write on a
   * revision known to have a child is refused here (stale-revisions.ts); a `_bulk_docs` with its body
   * read, so that the stored views take what it wrote without reading `_changes`; null for other
   * requests, whose bodies stream to the engine untouched.
   */
  private async readDocWrite(req: http.IncomingMessage, method: string, segments: string[], search: URLSearchParams): Promise<PendingWrite | null> {
    if (isBulkWriteUrl(method, segments, search)) return readBulkWrite(req);
    if (!isDocWriteUrl(method, segments)) return null;
    if (method === 'DELETE') {
      const doc = docWrite(method, segments, search, req.headers);
      return doc ? { doc } : null;
    }
    const length = Number(req.headers['content-length']);
    if (!Number.isInteger(length) || length <= 0 || length > MAX_FENCED_BODY || req.headers['transfer-encoding']) return null;
    const body = await readBody(req, MAX_FENCED_BODY);
    if (body === null) return null; // cannot happen with a truthful content-length
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      parsed = undefined; // the engine answers with its own error
    }
    return { doc: docWrite(method, segments, search, req.headers, parsed), body, json: parsed };
  }

  /** Who sent the request: cached per credential so the engine's session lookup runs rarely. */
  private async userOf(req: http.IncomingMessage): Promise<UserCtx | 'invalid'> {
    const credential = req.headers.authorization ?? (req.headers.cookie?.includes('AuthSession=') ? req.headers.cookie : undefined);
    if (!credential) return ANONYMOUS;
    const key = createHash('sha256').update(credential).digest('hex');
    const cached = this.sessions.get(key);
    if (cached && cached.until > Date.now()) return cached.user;
    const headers: http.OutgoingHttpHeaders = {};
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    else headers.cookie = credential;
    const { status, body } = await callEngine(this.upstream, 'GET', '/_session', headers);
    if (status === 401) return 'invalid';
    let ctx: Partial<UserCtx> = ANONYMOUS;
    try {
      ctx = (JSON.parse(body) as { userCtx?: UserCtx }).userCtx ?? ANONYMOUS;
    } catch {
      // A malformed Authorization header can make the engine answer with something other than JSON.
      return 'invalid';
    }
    const user: UserCtx = { name: ctx.name ?? null, roles: Array.isArray(ctx.roles) ? ctx.roles : [] };
    if (this.sessions.size > 10_000) this.sessions.clear();
    this.sessions.set(key, { user, until: Date.now() + SESSION_TTL_MS });
    return user;
  }

  /** Passes the request to the engine; `writesTo` names the database when it may write there. */
  private async proxy(req: http.IncomingMessage, res: http.ServerResponse, user: UserCtx, documentWrite: boolean, write: PendingWrite | null, writesTo: string | undefined): Promise<void> {
    let port: number;
    try {
      port = await this.engine.enginePort();
    } catch (err) {
      write?.settle?.(false);
      if (!write?.body) drain(req);
      sendJson(res, 503, { error: 'service_unavailable', reason: `The database engine is not running: ${String(err)}` });
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    // Compression buffers continuous _changes inside the engine; loopback needs none.
    headers['accept-encoding'] = 'identity';
    // CouchDB reads a document PUT as JSON whatever its content type; the engine would store an empty doc.
    const type = String(headers['content-type'] ?? '');
    if (documentWrite && (type === '' || type.startsWith('application/x-www-form-urlencoded'))) headers['content-type'] = 'application/json';
    let reported = false;
    const tracked = writesTo !== undefined || write?.settle !== undefined;
    const report = (status: number | null, chunks: Buffer[]): void => {
      if (!tracked || reported) return;
      reported = true;
      this.writeDone(writesTo, req.method!, write, status, chunks);
    };
    const upstream = http.request(
      { host: '127.0.0.1', port, method: req.method, path: req.url, headers, agent: this.agent },
      (up) => {
        let status = up.statusCode ?? 502;
        // CouchDB answers an authenticated user lacking access with 403; the engine says 401.
        if (status === 401 && user.name !== null) status = 403;
        const outHeaders = { ...up.headers };
        for (const h of HOP_BY_HOP) delete outHeaders[h];
        res.writeHead(status, outHeaders);
        // Before the pipe: the stored views must know of the write before its caller does.
        if (tracked) this.trackWrite(up, status, write, report);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      report(null, []);
      if (res.headersSent) {
        res.destroy();
        return;
      }
      this.log.warn({ err: err.message, method: req.method, path: req.url }, 'engine connection failed');
      sendJson(res, 503, { error: 'service_unavailable', reason: 'The database engine restarted during the request; retry it.' });
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    if (write?.body) upstream.end(write.body);
    else req.pipe(upstream);
  }

  /** Collects the reply of a fenced or bulk write (small) and reports the outcome once the engine's answer ends or breaks off. */
  private trackWrite(up: http.IncomingMessage, status: number, write: PendingWrite | null, report: (status: number | null, chunks: Buffer[]) => void): void {
    const chunks: Buffer[] = [];
    if ((write?.doc || write?.bulk) && (status === 201 || status === 202)) up.on('data', (c: Buffer) => chunks.push(c));
    up.on('end', () => report(status, chunks));
    up.on('close', () => report(null, []));
  }

  /**
   * A request that may have written has its answer (status null: none, or a broken one). Tells the
   * fence whether the engine accepted a fenced write, and the stored views what changed: the stored
   * document when the front can tell it, else that something did. A 4xx wrote nothing.
   */
  private writeDone(db: string | undefined, method: string, write: PendingWrite | null, status: number | null, chunks: Buffer[]): void {
    if (db !== undefined && write?.bulk && chunks.length > 0) {
      const written = bulkWritten(write.bulk, parseOrNull(Buffer.concat(chunks)));
      if (written) {
        for (const w of written) this.views.wrote(db, w);
        return;
      }
    }
    let stored: WrittenDoc | 'accepted' | null = null;
    if (write?.doc && chunks.length > 0) {
      try {
        const reply = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { ok?: boolean; id?: string; rev?: string };
        if (reply.ok === true && reply.id === write.doc.id && typeof reply.rev === 'string') stored = writtenDoc(write.doc.id, reply.rev, method, write.json) ?? 'accepted';
      } catch {
        // Not the JSON of an accepted write: nothing learnt.
      }
    }
    write?.settle?.(stored !== null);
    if (db === undefined || (status !== null && status >= 400 && status < 500)) return;
    if (stored !== null && stored !== 'accepted') this.views.wrote(db, stored);
    else this.views.wroteOpaque(db);
  }
}

/** A write whose body the front has read already (to find its document and base revision). */
interface PendingWrite {
  doc: DocWrite | null;
  body?: Buffer;
  /** the body parsed */
  json?: unknown;
  /** set once the fence admitted the write */
  settle?: SettleWrite;
  /** a `_bulk_docs` whose documents the front can tell (db-writes.ts) */
  bulk?: Map<string, Record<string, JsonValue>> | null;
}

/** A `_bulk_docs` body read when small enough (see MAX_BULK_BODY); null lets it stream to the engine. */
async function readBulkWrite(req: http.IncomingMessage): Promise<PendingWrite | null> {
  const length = Number(req.headers['content-length']);
  if (!Number.isInteger(length) || length <= 0 || length > MAX_BULK_BODY || req.headers['transfer-encoding']) return null;
  const body = await readBody(req, MAX_BULK_BODY);
  if (body === null) return null; // cannot happen with a truthful content-length
  return { doc: null, body, bulk: bulkDocs(parseOrNull(body)) };
}

function parseOrNull(text: Buffer): unknown {
  try {
    return JSON.parse(text.toString('utf8'));
  } catch {
    return null;
  }
}

/** PUT /db/doc, /db/_design/x or /db/_local/x: a JSON document body (attachments keep their own type). */
function isDocumentWrite(method: string, segments: string[]): boolean {
  if (method !== 'PUT' || segments.length < 2 || segments[0]!.startsWith('_')) return false;
  if (segments[1] === '_design' || segments[1] === '_local') return segments.length === 3;
  return segments.length === 2 && !segments[1]!.startsWith('_');
}

function drain(req: http.IncomingMessage): void {
  req.resume();
}

/** The whole request body, or null when it is larger than `max` bytes. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    req.on('end', () => resolve(size > max ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, extraHeaders: http.OutgoingHttpHeaders = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extraHeaders });
  res.end(text);
}
