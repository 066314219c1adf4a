/**
 * The PouchDB engine, run as a child process of the front (see front.ts) so that a request
 * that crashes express-pouchdb takes down only this process, which the front restarts.
 * It listens on an ephemeral loopback port and reports it to the parent over IPC.
 */
import { createRequire } from 'node:module';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { withCheapReads } from './engine-reads.js';

const require = createRequire(import.meta.url);

export interface EngineOptions {
  dataDir: string;
  inMemory: boolean;
  adminName: string;
  adminPassword: string;
}

export type EngineMessage = { type: 'ready'; port: number } | { type: 'fatal'; message: string };

function buildPouch(opts: EngineOptions) {
  let PouchDB = require('pouchdb-core')
    .plugin(require('pouchdb-adapter-http'))
    .plugin(require('pouchdb-replication'))
    .plugin(require('pouchdb-mapreduce'));
  PouchDB = opts.inMemory
    ? PouchDB.plugin(require('pouchdb-adapter-memory'))
    : PouchDB.plugin(require('pouchdb-adapter-leveldb'));
  withCheapReads(PouchDB, ['leveldb', 'memory']);
  return PouchDB.defaults({ prefix: path.join(opts.dataDir, 'db') + path.sep });
}

export async function startEngine(opts: EngineOptions): Promise<http.Server> {
  fs.mkdirSync(path.join(opts.dataDir, 'db'), { recursive: true });
  // The config is rebuilt from admin.json at every start: an admin removed from there must not linger,
  // and express-pouchdb re-saves an existing file on load, racing with the writes below.
  fs.rmSync(path.join(opts.dataDir, 'engine-config.json'), { force: true });
  const PouchDB = buildPouch(opts);
  const expressPouchdb = require('express-pouchdb');
  const app = expressPouchdb(PouchDB, {
    configPath: path.join(opts.dataDir, 'engine-config.json'),
    logPath: path.join(opts.dataDir, 'engine.log'),
    // Fauxton, replication and the config API are outside what tokenpool serves.
    overrideMode: { exclude: ['routes/fauxton', 'routes/replicate', 'replicator', 'routes/config'] },
  });
  const config = app.couchConfig;
  const set = (section: string, key: string, value: string) =>
    new Promise<void>((resolve, reject) => config.set(section, key, value, (err: unknown) => (err ? reject(err) : resolve())));
  const hashed: Record<string, string> = await require('pouchdb-auth').hashAdminPasswords({ [opts.adminName]: opts.adminPassword });
  await set('admins', opts.adminName, hashed[opts.adminName]!);
  await set('log', 'level', 'error');
  fs.chmodSync(path.join(opts.dataDir, 'engine-config.json'), 0o600);
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => resolve(server));
    // Only the front connects, through a keep-alive pool: an idle socket closed here could be reused
    // there at the same moment and fail its request ("socket hang up"), so idle sockets stay open.
    server.keepAliveTimeout = 0;
  });
}

async function main(): Promise<void> {
  // PouchDB leaves some promises unhandled when a design document or database changes under a query
  // in flight (seen in test/server-fuzz.test.ts). Node would end the process for it, losing an in-memory
  // engine's data and failing every request in flight; only the racing request is affected otherwise.
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`unhandled rejection in the engine: ${reason instanceof Error ? reason.message : JSON.stringify(reason)}\n`);
  });
  const opts = JSON.parse(process.env.TOKENPOOL_ENGINE_OPTIONS ?? '{}') as EngineOptions;
  delete process.env.TOKENPOOL_ENGINE_OPTIONS;
  const server = await startEngine(opts);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  process.send?.({ type: 'ready', port } satisfies EngineMessage);
  const stop = () => {
    server.close();
    // LevelDB flushes on close; PouchDB closes its handles when the process exits normally.
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  // Ctrl-C in a terminal signals the whole process group; the front decides when the engine stops
  // (SIGTERM, or the IPC channel closing when the front itself dies).
  process.on('SIGINT', () => {});
}

if (process.env.TOKENPOOL_ENGINE_OPTIONS) {
  main().catch((err: unknown) => {
    process.send?.({ type: 'fatal', message: String(err) } satisfies EngineMessage);
    process.exit(1);
  });
}
