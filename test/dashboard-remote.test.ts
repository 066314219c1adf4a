/** `tokenpool dashboard --db URL --credentials viewer.json`: serves a remote pool read with a viewer account. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli, CLI } from './helpers/cli.js';
import { seedPool, type Seeded } from './helpers/status-fixture.js';
import type { TokenPage } from '../server/status/types.js';
import type { DashboardSummary, PilotPanel } from '../server/dashboard/types.js';
import { newSubmission, saveSubmission } from '../server/submissions.js';

let server: TestServer;
let dbUrl: string;
let seeded: Seeded;
let dir: string;

beforeAll(async () => {
  server = await startTestServer();
  dbUrl = server.newDbUrl('remote');
  const admin = server.adminPool(dbUrl);
  seeded = await seedPool(admin, { obsids: ['L300001'], steps: ['avg'], perStep: 20 });
  await saveSubmission(admin, newSubmission({ backend: 'dirac', job_ids: ['811', '812', '813'], count: 3 }));
  // two tokens as picasclient writes them: counted by status, not in the per-observation rows
  await admin.db.bulk({
    docs: ['token_0', 'token_1'].map((_id) => ({ _id, type: 'token', lock: 0, done: 0, hostname: '', scrub_count: 0, input: 'echo', output: {}, uploads: {}, error: [] })),
  });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-remote-'));
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the remote dashboard answers with the viewer account and never hands it to the browser', async () => {
  const viewerFile = path.join(dir, 'viewer.json');
  const add = await runCli(['db', 'user', 'add', 'scientist', '--role', 'viewer', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--out', viewerFile]);
  assert.equal(add.code, 0, add.stderr);
  const viewerPassword = (JSON.parse(fs.readFileSync(viewerFile, 'utf8')) as { password: string }).password;

  const child = spawn(process.execPath, [...CLI, 'dashboard', '--db', dbUrl, '--credentials', viewerFile, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed: ${err}`)), 60_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /"url": "([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    const root = new URL('/', url).href;
    const redirect = await fetch(root, { redirect: 'manual' });
    assert.equal(redirect.status, 302);
    const page = await (await fetch(url)).text();
    assert.match(page, /<div id="app" data-api=/);
    assert.ok(!page.includes(viewerPassword));

    const res = await fetch(`${url}api/summary`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(!text.includes(viewerPassword));
    const summary = JSON.parse(text) as DashboardSummary;
    assert.equal(summary.totals.total, seeded.total);
    assert.deepEqual(summary.rows[0]!.counts, seeded.counts['L300001/avg']);

    // filters, as the page's URL gives them, answered with the viewer account
    const narrowed = (await (await fetch(`${url}api/summary?obsid=L300001&step=avg&status=error`)).json()) as DashboardSummary;
    const errors = seeded.counts['L300001/avg']!.error!;
    assert.deepEqual(narrowed.filter, { obsid: 'L300001', step: 'avg', status: 'error' });
    assert.deepEqual(narrowed.totals.counts, { error: errors });
    assert.deepEqual(narrowed.rows.map((r) => [r.obsid, r.step, r.total]), [['L300001', 'avg', errors]]);
    assert.equal(narrowed.failures.reduce((n, g) => n + g.count, 0), errors);
    assert.deepEqual(narrowed.choices, { obsids: ['L300001'], steps: ['avg'] });
    const running = (await (await fetch(`${url}api/summary?status=running`)).json()) as DashboardSummary;
    assert.deepEqual(running.totals.counts, { running: seeded.counts['L300001/avg']!.running });
    assert.deepEqual(running.failures, []);
    assert.equal((await (await fetch(`${url}api/summary?obsid=L300002`)).json() as DashboardSummary).rows.length, 0);

    // tokens in a status across the pool, paged with the cursor, and of one observation × step
    const ids: string[] = [];
    let after: string | null = null;
    do {
      const page = (await (await fetch(`${url}api/tokens?status=error&limit=1${after ? `&after=${encodeURIComponent(after)}` : ''}`)).json()) as TokenPage;
      ids.push(...page.items.map((t) => t.id));
      after = page.next;
    } while (after && ids.length <= seeded.errorIds.length);
    assert.deepEqual(ids.sort(), [...seeded.errorIds].sort());
    const paged: string[] = [];
    after = null;
    do {
      const page = (await (await fetch(`${url}api/tokens?obsid=L300001&step=avg&status=done&limit=3${after ? `&after=${after}` : ''}`)).json()) as TokenPage;
      paged.push(...page.items.map((t) => t.id));
      after = page.next;
    } while (after && paged.length <= seeded.total);
    assert.equal(new Set(paged).size, seeded.counts['L300001/avg']!.done);

    // bad filters: 400 with a message that names the parameter, never a stack trace
    for (const [query, reason] of [
      ['summary?obsid=229507', /^obsid "229507" is not an observation id$/],
      ['summary?step=cal%201', /^step "cal 1" is not a step name$/],
      ['summary?status=failed', /^status "failed" is not a token status$/],
      ['summary?obsids=L300001', /^summary has no query parameter "obsids"$/],
      ['summary?status=done&status=error', /given more than once/],
      ['summary?hours=-1', /^hours must be a whole number from 1 to 336/],
      ['tokens?obsid=L300001&step=avg', /^tokens needs a status$/],
      ['tokens?obsid=L300001&status=error', /^tokens lists one observation × step, or a status across the pool$/],
      ['tokens?status=error&after=garbage', /is not a cursor of this list/],
      ['pilots?limit=0', /^limit must be a whole number from 1 to 200/],
    ] as const) {
      const bad = await fetch(`${url}api/${query}`);
      assert.equal(bad.status, 400, query);
      assert.match(bad.headers.get('content-type') ?? '', /^application\/json/);
      const body = (await bad.json()) as { error: string; reason: string; hint?: string };
      assert.equal(body.error, 'bad_request');
      assert.match(body.reason, reason, query);
      assert.ok(!JSON.stringify(body).includes('    at '), `no stack trace for ${query}`);
    }

    // a viewer sees the submission records; the grid pilots as submitted, their state unknown
    const pilots = (await (await fetch(`${url}api/pilots`)).json()) as PilotPanel;
    assert.deepEqual(pilots.submissions.map((s) => [s.backend, s.count, s.pilots]), [['dirac', 3, { queued: 0, running: 0, finished: 0, unknown: 3 }]]);
    assert.deepEqual(pilots.totals, { queued: 0, running: 0, finished: 0, unknown: 3 });
    assert.equal(pilots.slurm, 'not-needed');

    // PiCaS-format tokens are counted, apart, and only without a filter
    assert.equal(summary.picasTokens, 2);
    assert.equal(narrowed.picasTokens, 0);

    assert.equal((await fetch(`${url}api/summary`, { method: 'DELETE' })).status, 405);
    assert.equal((await fetch(new URL('/_tokenpool/dashboard/other-db/api/summary', url))).status, 404);
  } finally {
    child.kill('SIGTERM');
  }
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, err);
});

test('the remote dashboard refuses to start with a wrong password, without printing it', async () => {
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ name: 'scientist', password: 'not-the-password-42' }), { mode: 0o600 });
  const r = await runCli(['dashboard', '--db', dbUrl, '--credentials', bad, '--port', '0']);
  assert.equal(r.code, 5);
  assert.match(r.stderr, /refused/);
  assert.ok(!r.stderr.includes('not-the-password-42'));
});
