/** Starts the embedded CouchDB-compatible server: admin credentials, engine supervisor, guarded front. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../log.js';
import { loadOrCreateAdmin, type AdminCredentials } from './credentials.js';
import { EngineSupervisor } from './supervisor.js';
import { Front, type RouteHandler } from './front.js';

export interface EmbeddedServerOptions {
  host?: string;
  port?: number;
  /** Where databases and the admin credentials live; a temporary directory when omitted. */
  dataDir?: string;
  inMemory?: boolean;
  routes?: RouteHandler[];
  log: Logger;
}

export interface EmbeddedServer {
  /** Base URL without credentials, e.g. http://127.0.0.1:5984 */
  url: string;
  admin: AdminCredentials;
  credentialsFile: string;
  credentialsCreated: boolean;
  dataDir: string;
  engine: EngineSupervisor;
  stop(): Promise<void>;
}

export async function startEmbeddedServer(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const temporary = opts.dataDir === undefined;
  const dataDir = path.resolve(opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-server-')));
  const { credentials, file, created } = loadOrCreateAdmin(dataDir);
  const engine = new EngineSupervisor(
    { dataDir, inMemory: opts.inMemory ?? false, adminName: credentials.name, adminPassword: credentials.password },
    opts.log,
  );
  await engine.enginePort();
  const front = new Front(engine, opts.log, { host: opts.host ?? '127.0.0.1', port: opts.port ?? 5984, routes: opts.routes });
  let address;
  try {
    address = await front.listen();
  } catch (err) {
    await engine.stop();
    throw err;
  }
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    admin: credentials,
    credentialsFile: file,
    credentialsCreated: created,
    dataDir,
    engine,
    async stop() {
      await front.close();
      await engine.stop();
      if (temporary) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
