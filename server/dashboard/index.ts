/**
 * The web dashboard: a static page plus read-only JSON query routes under /_tokenpool/dashboard/.
 *   dashboardRoutes()        mounted on the embedded server's front (`tokenpool server`): pages for every
 *                            database there, queried through the front itself (so grouped reduces take its
 *                            fast path) with the viewer's own credentials, or with fixed ones when given.
 *   startRemoteDashboard()   `tokenpool dashboard --db URL`: its own loopback HTTP server for one database
 *                            of a remote CouchDB, queried with a viewer account the browser never sees.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import type { RouteHandler } from '../embedded/front.js';
import { basicAuth, type Credentials, type Pool } from '../client.js';
import { createReader, readerFromPool } from '../status/reader.js';
import { dashboardHandler, DASHBOARD_PREFIX, type DashboardSource } from './routes.js';
import { LiveChannels } from './live.js';

export { DASHBOARD_PREFIX };

export interface DashboardRouteOptions {
  /**
   * Query with these credentials, so the page needs no login: for a server bound to loopback that
   * only its owner reaches (the demo). Without them the browser is asked for an account (basic auth)
   * and each query runs with it.
   */
  credentials?: Credentials;
}

export function dashboardRoutes(opts: DashboardRouteOptions = {}): RouteHandler[] {
  const fixed = opts.credentials ? basicAuth(opts.credentials) : null;
  const authOf = (req: http.IncomingMessage) => fixed ?? req.headers.authorization ?? null;
  const source: DashboardSource = {
    browserCredentials: fixed === null,
    resolve(req, db) {
      const authorization = authOf(req);
      if (!authorization) return 'unauthorized';
      const base = frontUrl(req);
      return {
        reader: createReader({ dbUrl: `${base}/${encodeURIComponent(db)}`, dbName: db, authorization }),
        key: createHash('sha256').update(`${base}\n${db}\n${authorization}`).digest('hex'),
      };
    },
    listDbs(req) {
      const authorization = authOf(req);
      if (!authorization) return 'unauthorized';
      return listDatabases(frontUrl(req), authorization);
    },
  };
  return [dashboardHandler(source, new LiveChannels())];
}

/** The front this request arrived at: the dashboard queries the database through it. */
function frontUrl(req: http.IncomingMessage): string {
  const addr = (req.socket.localAddress ?? '127.0.0.1').replace(/^::ffff:/, '');
  const host = addr.includes(':') ? `[${addr}]` : addr;
  return `http://${host}:${req.socket.localPort}`;
}

async function listDatabases(base: string, authorization: string): Promise<string[]> {
  const res = await fetch(`${base}/_all_dbs`, { headers: { authorization, accept: 'application/json' } });
  if (res.status === 401 || res.status === 403) return [];
  if (!res.ok) throw new Error(`listing databases failed: ${res.status}`);
  return ((await res.json()) as string[]).filter((d) => !d.startsWith('_'));
}

export interface RemoteDashboard {
  url: string;
  close(): Promise<void>;
}

/** `tokenpool dashboard`: serves one pool's dashboard on host:port, reading it with `pool`'s credentials. */
export async function startRemoteDashboard(pool: Pool, opts: { host: string; port: number }): Promise<RemoteDashboard> {
  const reader = readerFromPool(pool);
  const live = new LiveChannels();
  const source: DashboardSource = {
    single: pool.dbName,
    browserCredentials: false,
    resolve: (_req, db) => (db === pool.dbName ? { reader, key: db } : null),
  };
  const handle = dashboardHandler(source, live);
  const server = http.createServer((req, res) => {
    void (async () => {
      if (await handle(req, res)) return;
      req.resume();
      const location = `${DASHBOARD_PREFIX}/${encodeURIComponent(pool.dbName)}/`;
      res.writeHead(302, { location, 'content-type': 'text/plain' });
      res.end(`see ${location}\n`);
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}${DASHBOARD_PREFIX}/${encodeURIComponent(pool.dbName)}/`,
    async close() {
      live.closeAll();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Where the embedded server's dashboard shows one database. */
export function dashboardUrl(serverUrl: string, db: string): string {
  return `${serverUrl.replace(/\/$/, '')}${DASHBOARD_PREFIX}/${encodeURIComponent(db)}/`;
}
