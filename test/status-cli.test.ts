/** `tokenpool status` and `tokenpool failures` end to end: real CLI, real embedded server, real views. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { BACKEND, startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import { watchOneFinish } from './helpers/status-watch.js';
import { seedPool, type Seeded } from './helpers/status-fixture.js';
import type { Pool } from '../server/client.js';
import { generatePassword, upsertUser } from '../server/users.js';
import type { StatusSummary } from '../server/status/types.js';
import type { FailureReport } from '../server/status/failure-report.js';

let server: TestServer;
let dbUrl: string;
let pool: Pool;
let seeded: Seeded;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startTestServer();
  dbUrl = server.newDbUrl('status');
  pool = server.adminPool(dbUrl);
  seeded = await seedPool(pool, { obsids: ['L100001', 'L100002'], steps: ['avg', 'cal'], perStep: 40 });
  env = { TOKENPOOL_USER: server.admin.name, TOKENPOOL_PASSWORD: server.admin.password };
});

afterAll(async () => {
  await server?.stop();
});

test('status --json gives the counts per observation × step that the tokens have', async () => {
  const r = await runCli(['status', '--db', dbUrl, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as StatusSummary;
  assert.equal(s.totals.total, seeded.total);
  assert.equal(s.rows.length, 4);
  for (const row of s.rows) {
    assert.deepEqual(row.counts, seeded.counts[`${row.obsid}/${row.step}`]);
    assert.equal(row.done, seeded.counts[`${row.obsid}/${row.step}`]!.done);
    // every done token finished within the last hour
    assert.ok(row.perHour >= row.done, `rate ${row.perHour} below ${row.done} done in the last hour`);
    assert.ok(row.etaSeconds !== null && row.etaSeconds > 0);
  }
  const doneInChart = s.throughput.buckets.reduce((n, b) => n + b.count, 0);
  assert.equal(doneInChart, s.totals.counts.done);
  assert.equal(s.failures.reduce((n, g) => n + g.count, 0), s.totals.counts.error);
  for (const g of s.failures) assert.ok(g.examples.length > 0 && g.examples.length <= 3);
  assert.ok(!r.stdout.includes(server.admin.password));
});

test('status filters by --obsid and --step and prints a table for people', async () => {
  const r = await runCli(['status', '--db', dbUrl, '--obsid', 'L100002', '--step', 'cal'], { env });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const row = lines.find((l) => l.startsWith('L100002'));
  assert.ok(row, r.stdout);
  assert.match(row, /cal\s+[█▒░]{20}\s+40%\s+16\/40/);
  assert.ok(!r.stdout.includes('L100001'));
  assert.match(r.stdout, /Failures:/);
  assert.match(r.stdout, /checksum mismatch/);

  const js = JSON.parse((await runCli(['status', '--db', dbUrl, '--step', 'avg', '--json'], { env })).stdout) as StatusSummary;
  assert.deepEqual(js.rows.map((x) => `${x.obsid}/${x.step}`), ['L100001/avg', 'L100002/avg']);
});

test('status rejects a malformed --obsid with a clear message and exit code 2', async () => {
  const r = await runCli(['status', '--db', dbUrl, '--obsid', '229507'], { env });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--obsid "229507" is not an observation id/);
});

test('status names a missing database and how to create it', async () => {
  const r = await runCli(['status', '--db', server.newDbUrl('missing')], { env });
  assert.equal(r.code, 6);
  assert.match(r.stderr, /there is no database missing-[0-9a-f]+ at /);
  assert.match(r.stderr, /tokenpool db init/);
});

test('a wrong password is one refused login per command (CouchDB locks an account out after a few), never printed; the account still works after', async () => {
  const name = `reader-${Date.now().toString(36)}`;
  const password = generatePassword();
  await upsertUser(pool, name, 'viewer', password);
  const wrong = { TOKENPOOL_USER: name, TOKENPOOL_PASSWORD: 'wrong-password-123' };
  // A report sends a dozen queries at once: each sent with the wrong password would be a refused login, and more than five lock the account.
  for (const verb of [['status'], ['status', '--json'], ['failures'], ['tokens', 'list']]) {
    const r = await runCli([...verb, '--db', dbUrl], { env: wrong });
    assert.equal(r.code, 5, `${verb.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /wrong credentials|refused us \(401\)/);
    assert.ok(!r.stderr.includes('wrong-password-123'));
  }
  const r = await runCli(['status', '--db', dbUrl, '--json'], { env: { TOKENPOOL_USER: name, TOKENPOOL_PASSWORD: password } });
  assert.equal(r.code, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as StatusSummary).totals.total, seeded.total);
});

test('an account CouchDB has locked out is named as such, with what to do', { skip: BACKEND === 'embedded' }, async () => {
  const name = `locked-${Date.now().toString(36)}`;
  await upsertUser(pool, name, 'viewer', generatePassword());
  const wrong = { TOKENPOOL_USER: name, TOKENPOOL_PASSWORD: 'wrong-password-456' };
  const authorization = `Basic ${Buffer.from(`${name}:wrong-password-456`).toString('base64')}`;
  for (let i = 0; i < 7; i++) await fetch(dbUrl, { headers: { authorization } }).then((r) => r.arrayBuffer());
  for (const verb of [['status'], ['tokens', 'list']]) {
    const r = await runCli([...verb, '--db', dbUrl], { env: wrong });
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stderr, /has locked this account out for a while after several refused logins/);
    assert.match(r.stderr, /5 minutes after the first refused login/);
    assert.ok(!r.stderr.includes('wrong-password-456'));
  }
});

test('failures groups by reason with a log tail and the reset command', async () => {
  const r = await runCli(['failures', '--db', dbUrl, '--obsid', 'L100001', '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as FailureReport;
  assert.equal(report.groups.length, 4); // 2 steps × 2 reasons
  for (const g of report.groups) {
    assert.equal(g.obsid, 'L100001');
    assert.equal(g.reset, `tokenpool tokens reset --status error --obsid L100001 --step ${g.step} --db ${pool.displayUrl}`);
    assert.ok(g.log, `group ${g.reason} has a log`);
    assert.equal(g.log.name, 'logs_1.err');
    assert.equal(g.log.lines.length, 10);
    assert.equal(g.log.lines.at(-1), `FATAL: ${g.reason}`);
  }
  const text = await runCli(['failures', '--db', dbUrl, '--step', 'cal', '--lines', '3'], { env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /× L100002 cal: checksum mismatch \(exit code 21\)/);
  assert.match(text.stdout, /\| FATAL: checksum mismatch/);
  assert.match(text.stdout, /retry them: tokenpool tokens reset --status error --obsid L100002 --step cal/);
});

test('status --watch prints again when a token changes, and stops on SIGINT', async () => {
  const { before, reports } = await watchOneFinish(['--db', dbUrl, '--obsid', 'L100001', '--step', 'avg'], env, pool, 'L100001', 'avg');
  assert.equal(reports[1]!.rows[0]!.counts.done, before + 1);
});
