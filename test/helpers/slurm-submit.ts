/** What the real-Slurm submission tests share: an embedded server, a Slurm cluster, the pilot bundle, pools with a pilot account. */
import { afterAll, beforeAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './server.js';
import { freshPool, tempDir, type TestPool } from './agent.js';
import { addPilotAccount, buildBundle, type PilotAccount } from './pilot.js';
import { startSlurm, type SlurmCluster } from './slurm.js';

export interface SlurmSubmitFixture {
  server: TestServer;
  slurm: SlurmCluster;
  /** scratch and pilot log directory */
  dir: string;
  bundle: string;
  /** A fresh pool and an agent account for its pilots. */
  pool(): Promise<{ tp: TestPool; account: PilotAccount }>;
  /** `submit slurm` for that pool, JSON output, pilots' logs and scratch in `dir`; `extra` adds flags. */
  args(tp: TestPool, account: PilotAccount, extra: string[]): string[];
}

/** Registers the file's before/after hooks; the fields are set once `before` has run. */
export function slurmSubmitFixture(name: string): SlurmSubmitFixture {
  const fx = {
    async pool() {
      const tp = await freshPool(fx.server);
      return { tp, account: await addPilotAccount(tp, fx.dir) };
    },
    args(tp, account, extra) {
      return [
        'submit', 'slurm',
        '--pilot-credentials', account.file,
        '--db', tp.dbUrl,
        '--credentials', tp.credentials,
        '--bundle', fx.bundle,
        '--log-dir', path.join(fx.dir, 'logs'),
        '--scratch', fx.dir,
        '--json',
        ...extra,
      ];
    },
  } as SlurmSubmitFixture;
  beforeAll(async () => {
    fx.dir = tempDir(name);
    fx.bundle = buildBundle(fx.dir);
    [fx.server, fx.slurm] = await Promise.all([startTestServer(), startSlurm()]);
  });
  afterAll(async () => {
    await fx.slurm?.stop();
    await fx.server?.stop();
    if (fx.dir) fs.rmSync(fx.dir, { recursive: true, force: true });
  });
  return fx;
}
