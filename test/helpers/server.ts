/**
 * The pool backend a test run uses, chosen by TEST_BACKEND (test/matrix.ts sets it per run):
 *   embedded  a real embedded server per test file, on a random loopback port with its own data directory;
 *   couchdb   a running Apache CouchDB single node (COUCHDB_URL, an admin's URL);
 *   cluster   a running Apache CouchDB cluster (COUCHDB_CLUSTER_URLS, one admin URL per node).
 * On Apache CouchDB each test file gets a server admin of its own with a random password (so that
 * "the password never appears" assertions mean something) and deletes its databases at the end.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEmbeddedServer, type EmbeddedServer } from '../../server/embedded/index.js';
import { createLogger } from '../../server/log.js';
import { RUN_MARK } from '../setup/leftovers.js';
import { basicAuth, openPool, type Credentials, type Pool } from '../../server/client.js';

export type BackendKind = 'embedded' | 'couchdb' | 'cluster';
export const BACKENDS: readonly BackendKind[] = ['embedded', 'couchdb', 'cluster'];

function backendFromEnv(): BackendKind {
  const v = process.env.TEST_BACKEND ?? 'embedded';
  if (!(BACKENDS as readonly string[]).includes(v)) throw new Error(`TEST_BACKEND must be one of ${BACKENDS.join(', ')}, not ${v}`);
  return v as BackendKind;
}

/** This run's backend. */
export const BACKEND: BackendKind = backendFromEnv();

export interface TestServer {
  kind: BackendKind;
  /** Base URL of the first node, without credentials */
  url: string;
  /** Base URL of every node (one for a single server) */
  nodes: string[];
  admin: Credentials;
  credentialsFile: string;
  /** Database URL (no credentials) for a fresh database name */
  newDbUrl(prefix?: string): string;
  /** The same database reached through node i (modulo the number of nodes) */
  onNode(dbUrl: string, i: number): string;
  /** A pool opened as the server admin */
  adminPool(dbUrl: string): Pool;
  /** A 0600 credentials file of the server admin */
  adminCredentialsFile(): string;
  /** Stops node i (a real outage: the process ends); startNode brings it back with its data. */
  stopNode(i?: number): Promise<void>;
  startNode(i?: number): Promise<void>;
  stop(): Promise<void>;
  /** The embedded server, on the embedded backend */
  embedded: EmbeddedServer | null;
}

export async function startTestServer(opts: { inMemory?: boolean; dataDir?: string } = {}): Promise<TestServer> {
  return BACKEND === 'embedded' ? startEmbeddedTestServer(opts) : startCouchDb(BACKEND);
}

function onNode(nodes: string[], dbUrl: string, i: number): string {
  const u = new URL(dbUrl);
  const node = new URL(nodes[i % nodes.length]!);
  u.host = node.host;
  return u.toString();
}

function newName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** An embedded server whatever the run's backend: for tests of the embedded server itself. */
export type EmbeddedTestServer = TestServer & { embedded: EmbeddedServer };

export async function startEmbeddedTestServer(opts: { inMemory?: boolean; dataDir?: string } = {}): Promise<EmbeddedTestServer> {
  // A data directory that survives stopNode/startNode even for in-memory servers' credentials.
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-test-'));
  const log = createLogger('test-server', { pretty: false, level: 'warn' });
  const inMemory = opts.inMemory ?? true;
  let server: EmbeddedServer | null = await startEmbeddedServer({ port: 0, dataDir, inMemory, log });
  const url = server.url;
  const port = Number(new URL(url).port);
  const handle: EmbeddedTestServer = {
    kind: 'embedded',
    url,
    nodes: [url],
    admin: server.admin,
    credentialsFile: server.credentialsFile,
    embedded: server,
    newDbUrl: (prefix = 'pool') => `${url}/${newName(prefix)}`,
    onNode: (dbUrl) => dbUrl,
    adminPool: (dbUrl) => openPool({ db: dbUrl, user: handle.admin.name, password: handle.admin.password }),
    adminCredentialsFile: () => handle.credentialsFile,
    async stopNode() {
      await server?.stop();
      server = null;
    },
    async startNode() {
      server = await startEmbeddedServer({ port, dataDir, inMemory, log });
      handle.embedded = server;
    },
    async stop() {
      await server?.stop();
      if (!opts.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return handle;
}

/** Admin URLs of the running Apache CouchDB of this kind, from the variables its start scripts print. */
function couchDbAdminUrls(kind: 'couchdb' | 'cluster'): URL[] {
  const raw = kind === 'couchdb' ? process.env.COUCHDB_URL : process.env.COUCHDB_CLUSTER_URLS;
  const name = kind === 'couchdb' ? 'COUCHDB_URL' : 'COUCHDB_CLUSTER_URLS';
  if (!raw) throw new Error(`TEST_BACKEND=${kind} needs ${name} (eval "$(bash start-${kind === 'couchdb' ? 'single' : 'cluster'}.sh)" from the CouchDB test kit)`);
  return raw.trim().split(/\s+/).map((s) => new URL(s));
}

async function request(base: string, auth: string, method: string, pathname: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(base + pathname, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function startCouchDb(kind: 'couchdb' | 'cluster'): Promise<TestServer> {
  const adminUrls = couchDbAdminUrls(kind);
  const nodes = adminUrls.map((u) => u.origin);
  const bootstrap = basicAuth({ name: decodeURIComponent(adminUrls[0]!.username), password: decodeURIComponent(adminUrls[0]!.password) });
  // A server admin of this file's own, on every node (admins are node configuration).
  const admin: Credentials = { name: newName('tp-admin'), password: randomBytes(18).toString('base64url') };
  for (const node of nodes) {
    const r = await request(node, bootstrap, 'PUT', `/_node/_local/_config/admins/${admin.name}`, admin.password);
    if (r.status !== 200) throw new Error(`could not add a test admin on ${node}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  const auth = basicAuth(admin);
  // CouchDB hashes a new admin's password in the background: wait until every node takes it.
  for (const node of nodes) {
    for (let i = 0; (await request(node, auth, 'GET', '/_session')).status !== 200; i++) {
      if (i >= 100) throw new Error(`the test admin was not accepted by ${node} within 10 s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-couchdb-test-'));
  const credentialsFile = path.join(dir, 'admin.json');
  fs.writeFileSync(credentialsFile, JSON.stringify(admin), { mode: 0o600 });
  const created = new Set<string>();
  return {
    kind,
    url: nodes[0]!,
    nodes,
    admin,
    credentialsFile,
    embedded: null,
    newDbUrl(prefix = 'pool') {
      const name = newName(prefix);
      created.add(name);
      return `${nodes[0]}/${name}`;
    },
    onNode: (dbUrl, i) => onNode(nodes, dbUrl, i),
    adminPool: (dbUrl) => allCopies(openPool({ db: dbUrl, user: admin.name, password: admin.password }), nodes.length),
    adminCredentialsFile: () => credentialsFile,
    stopNode: (i = 0) => couchDbNode(kind, i, 'stop'),
    startNode: (i = 0) => couchDbNode(kind, i, 'start'),
    async stop() {
      for (const name of created) await request(nodes[0]!, auth, 'DELETE', `/${name}`).catch(() => undefined);
      for (const node of nodes) await request(node, bootstrap, 'DELETE', `/_node/_local/_config/admins/${admin.name}`).catch(() => undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The test's own reads and writes on a cluster wait for every copy (r = w = n): a test checks what the
 * product did, and must neither see an old copy nor leave a write on one copy only (a 202) that the
 * product then races with. The product's own requests keep CouchDB's defaults.
 */
export function allCopies(pool: Pool, n: number): Pool {
  if (n === 1) return pool;
  type Call = (first: unknown, params?: object | string) => unknown;
  const db = pool.db as unknown as Record<'get' | 'insert' | 'bulk', Call>;
  const [get, insert, bulk] = [db.get.bind(pool.db), db.insert.bind(pool.db), db.bulk.bind(pool.db)];
  const named = (params: object | string | undefined) => (typeof params === 'string' ? { docName: params } : (params ?? {}));
  db.get = (id, params) => get(id, { r: n, ...named(params) });
  db.insert = (doc, params) => insert(doc, { w: n, ...named(params) });
  db.bulk = (docs, params) => bulk(docs, { w: n, ...named(params) });
  const attachment = pool.db.attachment as unknown as Record<'insert', (id: string, name: string, data: unknown, type: string, params?: object) => unknown>;
  const attach = attachment.insert.bind(pool.db.attachment);
  attachment.insert = (id, name, data, type, params) => attach(id, name, data, type, { w: n, ...params });
  return pool;
}

/** Where the CouchDB test kit's scripts are (COUCHDB_TEST_KIT), for outage tests; null when not given. */
export const COUCHDB_KIT: string | null = process.env.COUCHDB_TEST_KIT ?? null;

/**
 * Stops or starts one real CouchDB node with the kit's scripts: the single node with stop.sh/start-single.sh,
 * a cluster node by its pid file (start-cluster.sh starts the nodes that are not running and reuses the others).
 */
async function couchDbNode(kind: 'couchdb' | 'cluster', i: number, action: 'stop' | 'start'): Promise<void> {
  if (!COUCHDB_KIT) throw new Error('stopping a CouchDB node needs COUCHDB_TEST_KIT (the folder with start-single.sh)');
  const home = process.env.COUCHDB_HOME ?? path.join(process.env.TMPDIR ?? '/tmp', 'tokenpool-couchdb');
  if (action === 'start') {
    await run('bash', [path.join(COUCHDB_KIT, kind === 'couchdb' ? 'start-single.sh' : 'start-cluster.sh')]);
    return;
  }
  if (kind === 'couchdb') {
    await run('bash', [path.join(COUCHDB_KIT, 'stop.sh'), 'single']);
    return;
  }
  const pidFile = path.join(process.env.COUCHDB_CLUSTER_DIR ?? path.join(home, 'cluster'), `node${i + 1}`, 'couchdb.pid');
  const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  process.kill(pid, 'SIGTERM');
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`cluster node ${i + 1} (pid ${pid}) did not stop within 30 s`);
}

/** Runs a CouchDB test kit script. A node it restarts outlives the test run, so it does not carry the run's mark (test/setup/leftovers.ts). */
function run(file: string, args: string[]): Promise<void> {
  const { [RUN_MARK]: _mark, ...env } = process.env;
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 120_000, env }, (err, _stdout, stderr) => (err ? reject(new Error(`${file} ${args.join(' ')}: ${err.message}\n${stderr.slice(-2000)}`)) : resolve()));
  });
}
