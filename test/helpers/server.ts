/** Real embedded servers for tests: each on a random loopback port with its own data directory. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { startEmbeddedServer, type EmbeddedServer } from '../../server/embedded/index.js';
import { createLogger } from '../../server/log.js';
import { openPool, type Pool } from '../../server/client.js';

export interface TestServer extends EmbeddedServer {
  /** Database URL (no credentials) for a fresh database name */
  newDbUrl(prefix?: string): string;
  /** A pool opened as the server admin */
  adminPool(dbUrl: string): Pool;
  /** Writes a 0600 credentials file for the admin and returns its path */
  adminCredentialsFile(): string;
}

export async function startTestServer(opts: { inMemory?: boolean; dataDir?: string } = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-test-'));
  const log = createLogger('test-server', { pretty: false, level: 'warn' });
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: opts.inMemory ?? true, log });
  return {
    ...server,
    newDbUrl(prefix = 'pool') {
      return `${server.url}/${prefix}-${randomBytes(4).toString('hex')}`;
    },
    adminPool(dbUrl: string) {
      return openPool({ db: dbUrl, user: server.admin.name, password: server.admin.password });
    },
    adminCredentialsFile() {
      return server.credentialsFile;
    },
    async stop() {
      await server.stop();
      if (!opts.dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
