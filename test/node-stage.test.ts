/**
 * `tokenpool stage` against the real embedded server and a stand-in LTA stager speaking XML-RPC on
 * loopback: tokens in `staging` get one request per observation, move to todo as their files
 * come online, and the rest become error "not staged" at the deadline or the threshold.
 */
import assert from 'node:assert/strict';
import { afterAll, beforeAll, test } from 'vitest';
import type { Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { EXIT, newToken, type Token } from '../server/token.js';
import { runCli } from './helpers/cli.js';
import { startLtaStager, type LtaStandIn } from './helpers/lta-stager.js';
import { startTestServer, type TestServer } from './helpers/server.js';

let server: TestServer;
let stager: LtaStandIn;

beforeAll(async () => {
  server = await startTestServer();
  stager = await startLtaStager();
});

afterAll(async () => {
  await stager.close();
  await server.stop();
});

const surl = (obsid: string, sb: number) =>
  `srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/${obsid.slice(1)}/${obsid}_SB${String(sb).padStart(3, '0')}_uv.MS_0123abcd.tar`;

async function seed(obsid: string, subbands: number[], perToken: number): Promise<{ pool: Pool; dbUrl: string }> {
  const dbUrl = server.newDbUrl('stage');
  const pool = server.adminPool(dbUrl);
  await initDatabase(pool, { guard: true });
  for (let i = 0; i < subbands.length; i += perToken) {
    const sbs = subbands.slice(i, i + perToken);
    await pool.db.insert(newToken({ obsid, step: 'cal1', subbands: sbs, site: 'sara', status: 'staging', input: sbs.map((sb) => ({ url: surl(obsid, sb) })) }));
  }
  // A token in todo must be left alone.
  await pool.db.insert(newToken({ obsid, step: 'other', subbands: [0], input: [{ url: surl(obsid, 0) }] }));
  return { pool, dbUrl };
}

const stage = (dbUrl: string, ...args: string[]) =>
  runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--lta-url', stager.url, ...args], {
    env: { TOKENPOOL_LTA_USER: stager.user, TOKENPOOL_LTA_PASSWORD: stager.password },
    timeoutMs: 120_000,
  });

async function tokens(pool: Pool, step = 'cal1'): Promise<Token[]> {
  const all = await pool.db.list({ include_docs: true });
  return all.rows.map((r) => r.doc as unknown as Token).filter((t) => t?.type === 'token' && t.step === step);
}

test('staging tokens move to todo as the stager brings their files online; the rest are "not staged" at the deadline', async () => {
  const { pool, dbUrl } = await seed('L700001', [100, 101, 102, 103, 104, 105], 2);

  // Round 1: one request for the observation, id recorded on every token, nothing online yet.
  let r = await stage(dbUrl, '--json');
  assert.equal(r.code, 0, r.stderr);
  const first = JSON.parse(r.stdout) as { observations: Array<{ requestId: number; files: number; online: number; waiting: number }>; movedToTodo: number };
  assert.equal(first.observations.length, 1);
  const id = first.observations[0]!.requestId;
  assert.deepEqual(stager.requests.get(id)!.surls.sort(), [100, 101, 102, 103, 104, 105].map((sb) => surl('L700001', sb)).sort());
  assert.equal(first.observations[0]!.waiting, 3);
  for (const t of await tokens(pool)) {
    assert.equal(t.status, 'staging');
    assert.equal((t.staging as { request_id: number }).request_id, id);
  }
  assert.ok(!r.stdout.includes(stager.password) && !r.stderr.includes(stager.password), 'the stager password is never printed');

  // Files of two tokens come online (and one file of the third): those two move to todo.
  stager.bringOnline(id, [100, 101, 102, 103, 104].map((sb) => surl('L700001', sb)));
  r = await stage(dbUrl);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /L700001\s+sara\s+\d+\s+in progress\s+5\/6\s+83\.3 %\s+2\s+0\s+1/);
  let byId = new Map((await tokens(pool)).map((t) => [t._id, t]));
  assert.equal(byId.get('L700001_cal1_SB100-101')!.status, 'todo');
  assert.equal(byId.get('L700001_cal1_SB102-103')!.status, 'todo');
  assert.equal(byId.get('L700001_cal1_SB104-105')!.status, 'staging');
  assert.equal(stager.requests.size, 1, 'no second request for the same files');

  // --watch with a deadline already passed: the last token becomes error "not staged".
  r = await stage(dbUrl, '--watch', '--interval', '1s', '--deadline', '0s');
  assert.equal(r.code, 0, r.stderr);
  byId = new Map((await tokens(pool)).map((t) => [t._id, t]));
  const last = byId.get('L700001_cal1_SB104-105')!;
  assert.equal(last.status, 'error');
  assert.equal(last.reason, 'not staged');
  assert.equal(last.exit_code, EXIT.notStaged);
  assert.ok(last.lock > 0 && last.done > 0, 'PiCaS sees it as error too');
  assert.match(last.error.at(-1)!.message, /not staged: 1 of 2 files not online \(deadline passed\)/);
  assert.equal((await tokens(pool, 'other'))[0]!.status, 'todo', 'tokens not staging are untouched');
  assert.match(r.stdout, /0 token\(s\) moved to todo, 1 marked "not staged", 0 still staging/);
});

test('--watch polls until done; at --threshold the stragglers are given up', async () => {
  const { pool, dbUrl } = await seed('L700002', Array.from({ length: 20 }, (_, i) => i), 1);
  const watch = stage(dbUrl, '--watch', '--interval', '1s', '--threshold', '95');
  // Wait for the request, then bring 19 of 20 files online while the watcher polls.
  let id: number | undefined;
  for (let i = 0; i < 200 && id === undefined; i++) {
    id = [...stager.requests.values()].find((q) => q.surls.some((s) => s.includes('L700002')))?.id;
    if (id === undefined) await new Promise((res) => setTimeout(res, 100));
  }
  assert.ok(id !== undefined, 'the watcher submitted a request');
  stager.bringOnline(id, Array.from({ length: 19 }, (_, i) => surl('L700002', i)));
  const r = await watch;
  assert.equal(r.code, 0, r.stderr);
  const all = await tokens(pool);
  assert.equal(all.filter((t) => t.status === 'todo').length, 19);
  const given = all.filter((t) => t.status === 'error');
  assert.deepEqual(given.map((t) => t._id), ['L700002_cal1_SB019']);
  assert.match(given[0]!.error.at(-1)!.message, /threshold 95 %/);
  assert.ok(stager.calls.includes('LtaStager.getprogress'));
});

test('bad credentials and a URL with a password are refused clearly', async () => {
  const { dbUrl } = await seed('L700003', [1], 1);
  let r = await runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--lta-url', stager.url], {
    env: { TOKENPOOL_LTA_USER: stager.user, TOKENPOOL_LTA_PASSWORD: 'wrong-password-1' },
  });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /HTTP 401 \(check the stager user and password\)/);
  assert.ok(!r.stderr.includes('wrong-password-1'));
  r = await runCli(['stage', '--db', dbUrl, '--lta-url', 'https://u:p4ssw0rd@lta.example.org/xmlrpc'], { env: {} });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--lta-url must not contain a user or password/);
  assert.ok(!r.stderr.includes('p4ssw0rd'));
  r = await runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--lta-url', stager.url], { env: { TOKENPOOL_LTA_USER: '', TOKENPOOL_LTA_PASSWORD: '' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no LTA stager credentials/);
});
