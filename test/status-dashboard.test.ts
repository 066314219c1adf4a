/**
 * `tokenpool status --dashboard URL`: the report read from a `tokenpool dashboard` process, which
 * shares one report a second among every watcher, on every backend. The dashboard reads the pool
 * with its own account, so the status command needs none and sends none.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import { watchOneFinish } from './helpers/status-watch.js';
import { seedPool, type Seeded } from './helpers/status-fixture.js';
import { startRemoteDashboard, type RemoteDashboard } from '../server/dashboard/index.js';
import type { Pool } from '../server/client.js';
import type { StatusReport } from '../server/status/report.js';

let server: TestServer;
let dbUrl: string;
let pool: Pool;
let seeded: Seeded;
let dashboard: RemoteDashboard;
let dashboardBase: string;
const withCredentials = (): NodeJS.ProcessEnv => ({ TOKENPOOL_USER: server.admin.name, TOKENPOOL_PASSWORD: server.admin.password });

beforeAll(async () => {
  server = await startTestServer();
  dbUrl = server.newDbUrl('status-dash');
  pool = server.adminPool(dbUrl);
  seeded = await seedPool(pool, { obsids: ['L100001'], steps: ['avg', 'cal'], perStep: 30 });
  dashboard = await startRemoteDashboard(pool, { host: '127.0.0.1', port: 0 });
  dashboardBase = new URL(dashboard.url).origin;
});

afterAll(async () => {
  await dashboard?.close();
  await server?.stop();
});

test('status --dashboard prints the report the dashboard serves, the same as queried directly, without credentials of its own', async () => {
  const served = await runCli(['status', '--db', dbUrl, '--dashboard', dashboardBase, '--json'], { env: { TOKENPOOL_CREDENTIALS: '', TOKENPOOL_USER: '', TOKENPOOL_PASSWORD: '' } });
  assert.equal(served.code, 0, served.stderr);
  const direct = await runCli(['status', '--db', dbUrl, '--json'], { env: withCredentials() });
  assert.equal(direct.code, 0, direct.stderr);
  const a = JSON.parse(served.stdout) as StatusReport;
  const b = JSON.parse(direct.stdout) as StatusReport;
  assert.equal(a.totals.total, seeded.total);
  assert.deepEqual(a.rows.map((r) => r.counts), b.rows.map((r) => r.counts));
  assert.deepEqual(a.failures, b.failures);
  assert.deepEqual(a.totals.counts, b.totals.counts);
});

test('status --watch --dashboard prints again when a token changes', async () => {
  const { before, reports } = await watchOneFinish(['--db', dbUrl, '--dashboard', dashboardBase, '--step', 'avg'], {}, pool, 'L100001', 'avg');
  assert.equal(reports.at(-1)!.rows[0]!.counts.done, before + 1);
});

test('status --dashboard naming something that serves no status says so and exits 2', async () => {
  const r = await runCli(['status', '--db', dbUrl, '--dashboard', server.url], { env: withCredentials() });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--dashboard .* serves no status of /);
  assert.match(r.stderr, /tokenpool dashboard/);
  assert.ok(!r.stderr.includes(server.admin.password));
});
