/**
 * `tokenpool server` serves the status report itself (server/dashboard/routes.ts, api/status): a
 * `tokenpool status` against it reads that shared report and follows the server's event stream
 * instead of querying the views and the changes feed per watcher. A plain CouchDB serves none, and
 * status then queries the views as before.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { startEmbeddedServer, type EmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { basicAuth, openPool, type Pool } from '../server/client.js';
import { dashboardRoutes } from '../server/dashboard/index.js';
import { SharedAnswers } from '../server/dashboard/shared.js';
import { openServedStatus } from '../server/status/served.js';
import { statusReport } from '../server/status/report.js';
import { sleep } from '../server/status/watch.js';
import { readerFromPool, RefusedError } from '../server/status/reader.js';
import { runCli } from './helpers/cli.js';
import { watchOneFinish } from './helpers/status-watch.js';
import { seedPool } from './helpers/status-fixture.js';
import { startTestServer, type TestServer } from './helpers/server.js';

let server: EmbeddedServer;
let plain: TestServer;
let pool: Pool;
let env: NodeJS.ProcessEnv;
const DB = 'lofar-served';

beforeAll(async () => {
  const log = createLogger('test-server', { pretty: false, level: 'warn' });
  server = await startEmbeddedServer({ port: 0, inMemory: true, routes: dashboardRoutes(), log });
  pool = openPool({ db: `${server.url}/${DB}`, user: server.admin.name, password: server.admin.password });
  await seedPool(pool, { obsids: ['L100001', 'L100002'], steps: ['avg'], perStep: 30 });
  env = { TOKENPOOL_USER: server.admin.name, TOKENPOOL_PASSWORD: server.admin.password };
  plain = await startTestServer();
});

afterAll(async () => {
  await server?.stop();
  await plain?.stop();
});

const auth = () => basicAuth(server.admin);

test('the served report is the one computed from the views; a server without the dashboard routes serves none', async () => {
  const served = await openServedStatus({ base: server.url, db: DB, authorization: auth(), quietMs: 10_000, shownAs: 'the test server' }, { obsid: 'L100002' });
  assert.ok(served, 'tokenpool server serves the status report');
  const a = await served.report();
  const b = await statusReport(readerFromPool(pool), { obsid: 'L100002' });
  // Rates and ETAs depend on the second each was computed in; what was counted may not.
  assert.deepEqual(a.rows.map((r) => [r.obsid, r.step, r.counts]), b.rows.map((r) => [r.obsid, r.step, r.counts]));
  assert.deepEqual(a.totals.counts, b.totals.counts);
  assert.deepEqual(a.failures, b.failures);
  assert.equal(a.pilots.available, false, 'pilots are counted by the caller, never served');

  assert.equal(await openServedStatus({ base: plain.url, db: DB, authorization: basicAuth(plain.admin), quietMs: 10_000, shownAs: 'the test server' }, {}), null);
});

test('a wrong password is a refusal, not a server without the report', async () => {
  await assert.rejects(openServedStatus({ base: server.url, db: DB, authorization: basicAuth({ name: server.admin.name, password: 'not-the-password' }), quietMs: 10_000, shownAs: 'the test server' }, {}), RefusedError);
  const r = await runCli(['status', '--db', `${server.url}/${DB}`], { env: { TOKENPOOL_USER: server.admin.name, TOKENPOOL_PASSWORD: 'not-the-password' } });
  assert.equal(r.code, 5, r.stderr);
  assert.ok(!r.stderr.includes('not-the-password'));
});

test('status --watch against tokenpool server follows its event stream and prints each change', async () => {
  const { before, reports } = await watchOneFinish(['--db', `${server.url}/${DB}`, '--obsid', 'L100001'], env, pool, 'L100001', 'avg');
  assert.equal(reports.at(-1)!.rows[0]!.counts.done, before + 1);
});

test('shared answers: asked together, computed once; after the pool changed, computed again; a failure is not kept', async () => {
  const shared = new SharedAnswers<number>(60_000);
  let computed = 0;
  const compute = async () => {
    await new Promise((r) => setTimeout(r, 20));
    return ++computed;
  };
  assert.deepEqual(await Promise.all([shared.get('pool', 'q', compute), shared.get('pool', 'q', compute)]), [1, 1]);
  assert.equal(await shared.get('pool', 'q', compute), 1, 'still fresh');
  assert.equal(await shared.get('other pool', 'q', compute), 2, 'pools do not share');
  shared.forget('pool');
  assert.equal(await shared.get('pool', 'q', compute), 3, 'a change ends the sharing');
  await assert.rejects(shared.get('pool', 'failing', () => Promise.reject(new Error('view gone'))));
  assert.equal(await shared.get('pool', 'failing', compute), 4);
});

test('a watch that sleeps once a second keeps no listener per sleep on its abort signal', async () => {
  const controller = new AbortController();
  for (let i = 0; i < 20; i++) await sleep(1, controller.signal);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});
