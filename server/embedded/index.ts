/** Starts the embedded CouchDB-compatible server: data directory, admin credentials, engine supervisor, guarded front. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../log.js';
import { DatabaseError, InputError } from '../errors.js';
import { loadOrCreateAdmin, type AdminCredentials } from './credentials.js';
import { lockDataDir, prepareDataDir } from './data-dir.js';
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
  front: Front;
  stop(): Promise<void>;
}

export async function startEmbeddedServer(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const temporary = opts.dataDir === undefined;
  const dataDir = path.resolve(opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-server-')));
  prepareDataDir(dataDir);
  const release = lockDataDir(dataDir);
  try {
    const { credentials, file, created } = loadOrCreateAdmin(dataDir);
    const engine = new EngineSupervisor(
      { dataDir, inMemory: opts.inMemory ?? false, adminName: credentials.name, adminPassword: credentials.password },
      opts.log,
    );
    const host = opts.host ?? '127.0.0.1';
    const port = opts.port ?? 5984;
    const front = new Front(engine, opts.log, { host, port, admin: credentials, routes: opts.routes });
    // The port first: a port in use fails in milliseconds rather than after the engine's start-up.
    const address = await front.listen().catch((err: NodeJS.ErrnoException) => {
      throw listenError(err, host, port);
    });
    try {
      await engine.enginePort();
    } catch (err) {
      await front.close();
      await engine.stop();
      throw new DatabaseError(`the database engine did not start: ${(err as Error).message}`, `Check the data directory ${dataDir} and its engine.log.`);
    }
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return {
      url: `http://${shownHost}:${address.port}`,
      admin: credentials,
      credentialsFile: file,
      credentialsCreated: created,
      dataDir,
      engine,
      front,
      async stop() {
        await front.close();
        await engine.stop();
        release();
        if (temporary) fs.rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    release();
    throw err;
  }
}

function listenError(err: NodeJS.ErrnoException, host: string, port: number): Error {
  if (err.code === 'EADDRINUSE') {
    return new InputError(`port ${port} on ${host} is already in use (another CouchDB or tokenpool server?)`, 'Stop that server, or pass --port with a free port (--port 0 picks one).');
  }
  if (err.code === 'EACCES') {
    return new InputError(`not allowed to listen on port ${port} of ${host}`, 'Ports below 1024 need privileges: pass --port 5984 or another port above 1023.');
  }
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
    return new InputError(`cannot listen on ${host}: no such local address`, 'Pass --host 127.0.0.1 (the default) or an address of this machine.');
  }
  return err;
}
