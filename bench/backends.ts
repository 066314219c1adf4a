/**
 * The servers a bench runs on, named as the test suite's projects are (vitest.config.ts):
 *   embedded  the embedded server, always (a LevelDB data directory of its own, deleted at the end);
 *   couchdb   a real Apache CouchDB single node: COUCHDB_URL, an admin's URL;
 *   cluster   a real Apache CouchDB cluster: COUCHDB_CLUSTER_URLS, one admin URL per node.
 * `--url URL` (or BENCH_URL) benches that one server only; `--only couchdb,cluster` narrows the list.
 * Every database a bench makes goes through freshDb and is deleted again by close().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEmbeddedServer, type EmbeddedServer } from '../server/embedded/index.js';
import { loadOrCreateAdmin } from '../server/embedded/credentials.js';
import type { RouteHandler } from '../server/embedded/front.js';
import { createLogger } from '../server/log.js';
import { basicAuth, openPool, type Credentials, type Pool } from '../server/client.js';
import { SETTLE_MS, type Copies } from '../server/branches.js';

export type BackendKind = 'embedded' | 'couchdb' | 'cluster' | 'url';
const KINDS: readonly BackendKind[] = ['embedded', 'couchdb', 'cluster', 'url'];

/** What a result section says about the server it ran on. */
export interface BackendInfo {
  kind: BackendKind;
  label: string;
  nodes: number;
  /** copies of each document (the cluster's n) */
  n: number;
}

export interface Backend {
  info: BackendInfo;
  /** Base URL of every node, without credentials */
  nodes: string[];
  admin: Credentials;
  /** A 0600 file with the admin's credentials, for the CLI */
  credentialsFile: string;
  /** How claims and outcomes read a token: all copies on a cluster, null where a 409 is enough */
  copies: Copies | null;
  embedded: EmbeddedServer | null;
  /** An empty database (no design documents) with a fresh name; its URL on the first node. */
  freshDb(prefix: string): Promise<string>;
  dropDb(dbUrl: string): Promise<void>;
  /** The database reached through node i (modulo the number of nodes), as the admin. */
  pool(dbUrl: string, node?: number): Pool;
  close(): Promise<void>;
}

export interface BenchArgs {
  /** positional numbers (sizes) */
  numbers: number[];
  url: string | null;
  only: BackendKind[] | null;
}

export function parseBenchArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const args: BenchArgs = { numbers: [], url: process.env.BENCH_URL || null, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--url') args.url = need(argv[++i], a);
    else if (a === '--only') args.only = need(argv[++i], a).split(',').map(kindOf);
    else if (/^\d+$/.test(a)) args.numbers.push(Number(a));
    else throw new Error(`unknown argument ${a} (sizes, --url URL, --only embedded,couchdb,cluster)`);
  }
  return args;
}

function need(v: string | undefined, flag: string): string {
  if (!v) throw new Error(`${flag} needs a value`);
  return v;
}

function kindOf(s: string): BackendKind {
  if (!(KINDS as readonly string[]).includes(s)) throw new Error(`--only: unknown backend ${s} (one of ${KINDS.join(', ')})`);
  return s as BackendKind;
}

export interface OpenOptions {
  /** extra routes for the embedded server (the dashboard), given its admin */
  embeddedRoutes?: (admin: Credentials) => RouteHandler[];
}

/** The backends of this run, in order embedded, couchdb, cluster (or the one --url names). */
export async function openBackends(args: BenchArgs, opts: OpenOptions = {}): Promise<Backend[]> {
  const wanted: [BackendKind, string[] | null][] = args.url
    ? [['url', [args.url]]]
    : [
        ['embedded', null],
        ['couchdb', split(process.env.COUCHDB_URL)],
        ['cluster', split(process.env.COUCHDB_CLUSTER_URLS)],
      ];
  const backends: Backend[] = [];
  try {
    for (const [kind, urls] of wanted) {
      if (args.only && !args.only.includes(kind)) continue;
      if (kind === 'embedded') backends.push(await openEmbedded(opts));
      else if (urls) backends.push(await openCouchDb(kind, urls));
      else if (args.only) throw new Error(`--only ${kind}: ${kind === 'couchdb' ? 'COUCHDB_URL' : 'COUCHDB_CLUSTER_URLS'} is not set`);
    }
  } catch (err) {
    for (const b of backends) await b.close();
    throw err;
  }
  const skipped = ['couchdb', 'cluster'].filter((k) => !args.url && !args.only && !backends.some((b) => b.info.kind === k));
  if (skipped.length) process.stderr.write(`# not benched on: ${skipped.join(', ')} (set COUCHDB_URL / COUCHDB_CLUSTER_URLS)\n`);
  return backends;
}

function split(raw: string | undefined): string[] | null {
  const urls = raw?.trim().split(/\s+/).filter(Boolean);
  return urls?.length ? urls : null;
}

/** Runs fn on each backend in turn, closing each (its databases deleted) when its turn ends, and all of them on failure. */
export async function onEachBackend<T>(backends: readonly Backend[], fn: (b: Backend) => Promise<T>): Promise<({ backend: BackendInfo } & T)[]> {
  const out: ({ backend: BackendInfo } & T)[] = [];
  let next = 0;
  try {
    for (; next < backends.length; next++) {
      const b = backends[next]!;
      process.stderr.write(`## ${b.info.label}\n`);
      try {
        out.push({ backend: b.info, ...(await fn(b)) });
      } finally {
        await b.close();
      }
    }
  } finally {
    for (const b of backends.slice(next + 1)) await b.close();
  }
  return out;
}

/** The backend whose figures decide the targets: the real single node, else the explicit server, the embedded one, the cluster. */
export function judgedOn<T extends { backend: BackendInfo }>(sections: readonly T[]): T | null {
  for (const kind of ['couchdb', 'url', 'embedded', 'cluster'] as const) {
    const s = sections.find((x) => x.backend.kind === kind);
    if (s) return s;
  }
  return null;
}

export interface Target {
  want: string;
  got: number | null;
  met: boolean | null;
  of?: string;
}

export function target(want: string, got: number | null, ok: (x: number) => boolean, of?: string): Target {
  return { want, got, met: got === null ? null : ok(got), ...(of ? { of } : {}) };
}

/**
 * Top-level targets: each from the judged backend, except those about a cluster (clusterOnly), which
 * come from the cluster's section when there is one; and every backend's figures side by side.
 */
export function judgedTargets<T extends { backend: BackendInfo; targets: Record<string, Target> }>(sections: readonly T[], clusterOnly: readonly string[] = []): Record<string, unknown> {
  const judged = judgedOn(sections);
  const cluster = sections.find((s) => s.backend.n > 1);
  const pick = (name: string) => (clusterOnly.includes(name) && cluster ? { ...cluster.targets[name], on: cluster.backend.kind } : judged?.targets[name]);
  return {
    judged_on: judged?.backend.kind ?? null,
    ...Object.fromEntries(Object.keys(judged?.targets ?? {}).map((name) => [name, pick(name)])),
    per_backend: Object.fromEntries(sections.map((s) => [s.backend.kind, Object.fromEntries(Object.entries(s.targets).map(([k, t]) => [k, { got: t.got, met: t.met }]))])),
  };
}

function newName(prefix: string): string {
  return `bench-${prefix}-${randomBytes(4).toString('hex')}`;
}

function onNode(nodes: readonly string[], dbUrl: string, i: number): string {
  const u = new URL(dbUrl);
  u.host = new URL(nodes[i % nodes.length]!).host;
  return u.toString();
}

async function openEmbedded(opts: OpenOptions): Promise<Backend> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-'));
  const log = createLogger('bench', { pretty: false, level: 'warn' });
  // The admin exists before the server starts, so that the dashboard's routes can query with it.
  const admin = loadOrCreateAdmin(dataDir).credentials;
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, routes: opts.embeddedRoutes?.(admin), log });
  const info: BackendInfo = { kind: 'embedded', label: 'embedded (pouchdb-server engine in its own process, LevelDB), over HTTP on loopback', nodes: 1, n: 1 };
  return backend(info, [server.url], admin, server.credentialsFile, server, async () => {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
}

async function openCouchDb(kind: BackendKind, urls: string[]): Promise<Backend> {
  const parsed = urls.map((s) => new URL(s));
  const nodes = parsed.map((u) => u.origin);
  const first = parsed[0]!;
  if (!first.username) throw new Error(`${kind}: give an admin's URL, http://user:password@host:port`);
  const admin: Credentials = { name: decodeURIComponent(first.username), password: decodeURIComponent(first.password) };
  const auth = basicAuth(admin);
  const welcome = (await request(nodes[0]!, auth, 'GET', '/')).body as { version?: string };
  const members = ((await request(nodes[0]!, auth, 'GET', '/_membership')).body as { cluster_nodes?: string[] }).cluster_nodes?.length ?? 1;
  const configN = Number((await request(nodes[0]!, auth, 'GET', '/_node/_local/_config/cluster/n')).body);
  const n = members > 1 ? Math.min(members, configN || 3) : 1;
  const shape = members > 1 ? `${members}-node cluster (n=${n})` : 'single node';
  const info: BackendInfo = { kind, label: `Apache CouchDB ${welcome.version ?? '?'}, ${shape}, via ${nodes.length} URL${nodes.length > 1 ? 's' : ''}`, nodes: members, n };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-couchdb-'));
  const credentialsFile = path.join(dir, 'admin.json');
  fs.writeFileSync(credentialsFile, JSON.stringify(admin), { mode: 0o600 });
  return backend(info, nodes, admin, credentialsFile, null, async () => fs.rmSync(dir, { recursive: true, force: true }));
}

function backend(info: BackendInfo, nodes: string[], admin: Credentials, credentialsFile: string, embedded: EmbeddedServer | null, stop: () => Promise<void>): Backend {
  const auth = basicAuth(admin);
  const created = new Set<string>();
  const dropDb = async (dbUrl: string): Promise<void> => {
    const r = await request(nodes[0]!, auth, 'DELETE', new URL(dbUrl).pathname);
    if (r.status !== 200 && r.status !== 202 && r.status !== 404) throw new Error(`DELETE ${dbUrl}: ${r.status} ${JSON.stringify(r.body)}`);
    created.delete(dbUrl);
  };
  return {
    info,
    nodes,
    admin,
    credentialsFile,
    copies: info.n > 1 ? { n: info.n, settleMs: SETTLE_MS } : null,
    embedded,
    async freshDb(prefix) {
      const dbUrl = `${nodes[0]}/${newName(prefix)}`;
      const r = await request(nodes[0]!, auth, 'PUT', new URL(dbUrl).pathname);
      if (r.status !== 201 && r.status !== 202) throw new Error(`PUT ${dbUrl}: ${r.status} ${JSON.stringify(r.body)}`);
      created.add(dbUrl);
      return dbUrl;
    },
    dropDb,
    pool: (dbUrl, node = 0) => openPool({ db: onNode(nodes, dbUrl, node), user: admin.name, password: admin.password }),
    async close() {
      for (const dbUrl of [...created]) await dropDb(dbUrl).catch((err: unknown) => process.stderr.write(`could not delete ${dbUrl}: ${String(err)}\n`));
      await stop();
    },
  };
}

async function request(base: string, auth: string, method: string, pathname: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(base + pathname, { method, headers: { authorization: auth, accept: 'application/json' }, signal: AbortSignal.timeout(120_000) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
}
