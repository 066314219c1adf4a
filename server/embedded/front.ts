/**
 * The embedded server's public face: an HTTP front on --host/--port that authenticates each request,
 * refuses what would crash or is not allowed (guard.ts), and proxies the rest to the engine child.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import { EngineSupervisor } from './supervisor.js';
import { judge, type UserCtx, type Verdict } from './guard.js';

/** Extra handlers mounted beside the CouchDB API (the dashboard); return true when handled. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean | Promise<boolean>;

export interface FrontOptions {
  host: string;
  port: number;
  routes?: RouteHandler[];
}

const ANONYMOUS: UserCtx = { name: null, roles: [] };
const SESSION_TTL_MS = 30_000;
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'];

export class Front {
  private server: http.Server | null = null;
  private readonly sessions = new Map<string, { user: UserCtx; until: number }>();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

  constructor(
    private readonly engine: EngineSupervisor,
    private readonly log: Logger,
    private readonly opts: FrontOptions,
  ) {}

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

  /** Stops accepting, lets requests in flight finish (bounded), closes idle keep-alive sockets. */
  async close(graceMs = 10_000): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
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
    const user = await this.userOf(req);
    if (user === 'invalid') {
      sendJson(res, 401, { error: 'unauthorized', reason: 'Name or password is incorrect.' });
      return;
    }
    const verdict: Verdict | null = judge(method, url, user);
    if (verdict) {
      drain(req);
      sendJson(res, verdict.status, { error: verdict.error, reason: verdict.reason });
      return;
    }
    await this.proxy(req, res, user);
  }

  /** Who sent the request: cached per credential so the engine's session lookup runs rarely. */
  private async userOf(req: http.IncomingMessage): Promise<UserCtx | 'invalid'> {
    const credential = req.headers.authorization ?? (req.headers.cookie?.includes('AuthSession=') ? req.headers.cookie : undefined);
    if (!credential) return ANONYMOUS;
    const key = createHash('sha256').update(credential).digest('hex');
    const cached = this.sessions.get(key);
    if (cached && cached.until > Date.now()) return cached.user;
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
    if (req.headers.authorization) headers.authorization = req.headers.authorization;
    else headers.cookie = credential;
    const { status, body } = await this.request('GET', '/_session', headers);
    if (status === 401) return 'invalid';
    const ctx = (JSON.parse(body) as { userCtx?: UserCtx }).userCtx ?? ANONYMOUS;
    const user: UserCtx = { name: ctx.name ?? null, roles: ctx.roles ?? [] };
    if (this.sessions.size > 10_000) this.sessions.clear();
    this.sessions.set(key, { user, until: Date.now() + SESSION_TTL_MS });
    return user;
  }

  private async request(method: string, path: string, headers: http.OutgoingHttpHeaders): Promise<{ status: number; body: string }> {
    const port = await this.engine.enginePort();
    return new Promise((resolve, reject) => {
      const upstream = http.request({ host: '127.0.0.1', port, method, path, headers, agent: this.agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 500, body }));
      });
      upstream.on('error', reject);
      upstream.end();
    });
  }

  private async proxy(req: http.IncomingMessage, res: http.ServerResponse, user: UserCtx): Promise<void> {
    let port: number;
    try {
      port = await this.engine.enginePort();
    } catch (err) {
      drain(req);
      sendJson(res, 503, { error: 'service_unavailable', reason: `The database engine is not running: ${String(err)}` });
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    // Compression buffers continuous _changes inside the engine; loopback needs none.
    headers['accept-encoding'] = 'identity';
    const upstream = http.request(
      { host: '127.0.0.1', port, method: req.method, path: req.url, headers, agent: this.agent },
      (up) => {
        let status = up.statusCode ?? 502;
        // CouchDB answers an authenticated user lacking access with 403; the engine says 401.
        if (status === 401 && user.name !== null) status = 403;
        const outHeaders = { ...up.headers };
        for (const h of HOP_BY_HOP) delete outHeaders[h];
        res.writeHead(status, outHeaders);
        up.pipe(res);
        up.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
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
    req.pipe(upstream);
  }
}

function drain(req: http.IncomingMessage): void {
  req.resume();
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
