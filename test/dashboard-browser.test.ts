/**
 * The dashboard in a real browser (Debian's headless Chromium): the figures shown are the views'
 * answers, a token finished over HTTP shows up without a reload, and the page never sees a secret.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedServer, type EmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool, type Pool } from '../server/client.js';
import { dashboardRoutes, dashboardUrl } from '../server/dashboard/index.js';
import { nowSeconds, type Token } from '../server/token.js';
import { seedPool, type Seeded } from './helpers/status-fixture.js';
import { newSubmission, saveSubmission } from '../server/submissions.js';
import { launchBrowser, type Browser } from './helpers/browser.js';
import type { Page } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { initDatabase } from '../server/setup.js';
import { prepareRun } from '../server/pipelines/make.js';
import { writeRun } from '../server/pipelines/runs.js';
import { claim, writeClaim, type Outcome } from '../server/lease.js';
import { recordOutcome } from '../agent/attempt.js';
import { releaseDependents } from '../agent/release.js';

let server: EmbeddedServer;
let dataDir: string;
let pool: Pool;
let browser: Browser;
let seeded: Seeded;
const DB = 'lofar-dashboard';

beforeAll(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-dash-'));
  const log = createLogger('test-server', { pretty: false, level: 'warn' });
  server = await startEmbeddedServer({ port: 0, dataDir, inMemory: true, routes: dashboardRoutes(), log });
  pool = openPool({ db: `${server.url}/${DB}`, user: server.admin.name, password: server.admin.password });
  seeded = await seedPool(pool, { obsids: ['L100001', 'L100002'], steps: ['avg', 'cal'], perStep: 30 });
  // a Slurm configuration squeue refuses at once, whatever Slurm this machine has: Slurm pilots are unknown
  process.env.SLURM_CONF = '/dev/null';
  browser = await launchBrowser({ httpCredentials: { username: server.admin.name, password: server.admin.password } });
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

const ALL_ROWS = ['row-L100001-avg', 'row-L100001-cal', 'row-L100002-avg', 'row-L100002-cal'];

/** The progress table's rows once the summary for `filter` ("obsid=…&step=…&status=…", in that order) is shown. */
async function rowIds(page: Page, filter = ''): Promise<string[]> {
  await page.locator(`[data-testid="summary"][data-filter="${filter}"]`).waitFor();
  return page.locator('tr[data-testid^="row-"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-testid') ?? ''));
}

async function viewCounts(): Promise<Map<string, number>> {
  const res = await pool.db.view<number>('tokenpool', 'progress', { group_level: 3 });
  return new Map(res.rows.map((r) => [(r.key as unknown as string[]).join('-'), r.value]));
}

test('the dashboard shows the views\' figures and follows changes without a reload', async () => {
  const page = await browser.context.newPage();
  const responses: string[] = [];
  page.on('response', async (r) => {
    if (r.url().includes('/api/') && !r.url().endsWith('/events')) responses.push(await r.text().catch(() => ''));
  });
  await page.goto(dashboardUrl(server.url, DB));
  await page.getByTestId('total').waitFor();
  await page.getByTestId('live').and(page.locator('.on')).waitFor();

  const counts = await viewCounts();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  assert.equal(await page.getByTestId('total').textContent(), String(total));
  for (const status of ['todo', 'running', 'done', 'error', 'waiting']) {
    const sum = [...counts].filter(([k]) => k.endsWith(`-${status}`)).reduce((a, [, v]) => a + v, 0);
    assert.equal(await page.getByTestId(`total-${status}`).textContent(), String(sum), status);
  }
  for (const [key, n] of counts) assert.equal(await page.getByTestId(`cell-${key}`).textContent(), String(n), key);
  const failureCounts = await page.getByTestId('failure-count').allTextContents();
  const errors = [...counts].filter(([k]) => k.endsWith('-error')).reduce((a, [, v]) => a + v, 0);
  assert.equal(failureCounts.map(Number).reduce((a, b) => a + b, 0), errors);

  // a count drills into that observation × step × status (a link); a token in error: its attempt history and log tail
  await page.getByTestId('cell-L100001-avg-error').click();
  await page.waitForURL(/\?obsid=L100001&step=avg&status=error$/);
  assert.deepEqual(await rowIds(page, 'obsid=L100001&step=avg&status=error'), ['row-L100001-avg']);
  await page.getByTestId('token-list').locator('tbody a').first().click();
  await page.waitForURL(/&token=/);
  const detail = page.getByTestId('token-detail');
  await detail.locator('pre.log').waitFor();
  assert.match((await detail.locator('pre.log').textContent()) ?? '', /FATAL: /);
  assert.equal(await detail.getByTestId('detail-status').textContent(), 'error');

  // the back button undoes both: the whole pool again
  await page.goBack();
  await page.goBack();
  await page.waitForURL((u) => u.search === '');
  assert.deepEqual(await rowIds(page), ALL_ROWS);
  assert.equal(await page.getByTestId('token-detail').count(), 0);

  // finish a running token through the database's HTTP API: the page updates by itself
  const doneBefore = counts.get('L100002-cal-done')!;
  const running = await pool.db.view('tokenpool', 'progress', { reduce: false, key: ['L100002', 'cal', 'running'], limit: 1, include_docs: true });
  const doc = running.rows[0]!.doc as Token;
  const now = nowSeconds();
  await pool.db.insert({ ...doc, status: 'done', lock: now - 30, done: now, exit_code: 0, times: { ...doc.times, done: now } });
  await page.waitForFunction(
    `document.querySelector('[data-testid="done-L100002-cal"]')?.textContent?.startsWith('${doneBefore + 1} /')`,
    undefined,
    { timeout: 60_000 },
  );
  assert.equal(await page.getByTestId('cell-L100002-cal-done').textContent(), String(doneBefore + 1));

  fs.mkdirSync('test-artifacts', { recursive: true });
  await page.screenshot({ path: 'test-artifacts/dashboard.png', fullPage: true });

  for (const body of responses) assert.ok(!body.includes(server.admin.password), 'no secret in an API answer');
  assert.ok(!(await page.content()).includes(server.admin.password));
  await page.close();
});

test('the dashboard is read-only and asks for credentials', async () => {
  const base = dashboardUrl(server.url, DB);
  const anonymous = await fetch(`${base}api/summary`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /);
  const auth = 'Basic ' + Buffer.from(`${server.admin.name}:${server.admin.password}`).toString('base64');
  const post = await fetch(`${base}api/summary`, { method: 'POST', headers: { authorization: auth }, body: '{}' });
  assert.equal(post.status, 405);
  const bad = await fetch(`${base}api/summary?obsid=nope`, { headers: { authorization: auth } });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { reason: string }).reason, /not an observation id/);
  const missing = await fetch(`${base}api/token/L1_x_SB000`, { headers: { authorization: auth } });
  assert.equal(missing.status, 404);
});

function sumOf(counts: Map<string, number>, match: (key: string) => boolean): number {
  return [...counts].filter(([k]) => match(k)).reduce((a, [, v]) => a + v, 0);
}

test('filters live in the URL: a shared link, the menus, the back button, and the token list follows them', async () => {
  const page = await browser.context.newPage();
  const counts = await viewCounts();
  const errors = sumOf(counts, (k) => k.endsWith('-error'));
  await page.goto(`${dashboardUrl(server.url, DB)}?status=error`);

  // a status across the pool: only its counts, and its tokens listed
  assert.deepEqual(await rowIds(page, 'status=error'), ALL_ROWS);
  assert.equal(await page.getByTestId('total').textContent(), String(errors));
  assert.equal(await page.getByTestId('total-done').textContent(), '0');
  assert.equal(await page.getByTestId('cell-L100002-avg-done').count(), 0);
  const list = page.getByTestId('token-list');
  await list.getByTestId('token-row').first().waitFor();
  const listed = await list.locator('tbody a').allTextContents();
  assert.equal(listed.length, errors);
  assert.deepEqual(listed.sort(), [...seeded.errorIds].sort());

  // the observation menu narrows the tables and the failures; a list needs a step too
  await page.getByTestId('filter-obsid').selectOption('L100002');
  await page.waitForURL(/\?obsid=L100002&status=error$/);
  assert.deepEqual(await rowIds(page, 'obsid=L100002&status=error'), ['row-L100002-avg', 'row-L100002-cal']);
  const failureCounts = (await page.getByTestId('failure-count').allTextContents()).map(Number);
  assert.equal(failureCounts.reduce((a, b) => a + b, 0), sumOf(counts, (k) => k.startsWith('L100002-') && k.endsWith('-error')));
  await page.getByTestId('list-hint').waitFor();
  assert.equal(await page.getByTestId('token-list').count(), 0);

  await page.getByTestId('filter-step').selectOption('cal');
  await page.waitForURL(/\?obsid=L100002&step=cal&status=error$/);
  assert.deepEqual(await rowIds(page, 'obsid=L100002&step=cal&status=error'), ['row-L100002-cal']);
  await page.waitForFunction(
    `document.querySelectorAll('[data-testid="token-list"] [data-testid="token-row"]').length === ${counts.get('L100002-cal-error')}`,
    undefined,
    { timeout: 60_000 },
  );

  // back, back: the same views again, in reverse
  await page.goBack();
  assert.deepEqual(await rowIds(page, 'obsid=L100002&status=error'), ['row-L100002-avg', 'row-L100002-cal']);
  assert.equal(await page.getByTestId('filter-step').inputValue(), '');
  await page.goBack();
  assert.deepEqual(await rowIds(page, 'status=error'), ALL_ROWS);
  assert.equal(await page.getByTestId('filter-obsid').inputValue(), '');

  await page.getByTestId('filter-clear').click();
  await page.waitForURL((u) => u.search === '');
  assert.deepEqual(await rowIds(page), ALL_ROWS);
  assert.equal(await page.getByTestId('total').textContent(), String(sumOf(counts, () => true)));
  await page.close();
});

test('PiCaS-format tokens are in the totals, marked, with the adopt hint; a filter leaves them out', async () => {
  const db = 'lofar-picas';
  const picasPool = openPool({ db: `${server.url}/${db}`, user: server.admin.name, password: server.admin.password });
  const own = await seedPool(picasPool, { obsids: ['L200001'], steps: ['avg'], perStep: 10 });
  const t = nowSeconds() - 600;
  const base = { type: 'token', hostname: '', scrub_count: 0, output: {}, uploads: {}, error: [] };
  await picasPool.db.bulk({
    docs: [
      { _id: 'token_0', ...base, lock: 0, done: 0, input: "echo 'A'" },
      { _id: 'token_1', ...base, lock: t, done: t + 5, hostname: 'wn1', exit_code: 0, input: "echo 'B'" },
      { _id: 'token_2', ...base, lock: t, done: t + 5, hostname: 'wn2', exit_code: 3, input: 'false' },
    ],
  });
  const page = await browser.context.newPage();
  await page.goto(dashboardUrl(server.url, db));
  await rowIds(page);
  assert.equal(await page.getByTestId('total-picas').textContent(), '3');
  assert.equal(await page.getByTestId('total').textContent(), String(own.total + 3));
  assert.match((await page.getByTestId('picas-hint').textContent()) ?? '', /3 PiCaS-format tokens .* tokenpool tokens adopt/s);

  await page.getByTestId('filter-status').selectOption('todo');
  await rowIds(page, 'status=todo');
  assert.equal(await page.getByTestId('total-picas').count(), 0);
  assert.equal(await page.getByTestId('picas-hint').count(), 0);
  await page.close();
});

test('the pilots panel lists submission records, grid pilots as submitted with their state unknown', async () => {
  const db = 'lofar-pilots';
  const pilotsPool = openPool({ db: `${server.url}/${db}`, user: server.admin.name, password: server.admin.password });
  await seedPool(pilotsPool, { obsids: ['L300001'], steps: ['avg'], perStep: 5 });
  const now = nowSeconds();
  await saveSubmission(pilotsPool, newSubmission({ backend: 'glite', job_ids: ['https://wms.example.org:9000/abc'], count: 2 }, now - 7200));
  const finished = newSubmission({ backend: 'slurm', job_ids: ['4100'], cluster: 'lofar', count: 5 }, now - 3600);
  await saveSubmission(pilotsPool, { ...finished, finished_at: now - 1800 });
  await saveSubmission(pilotsPool, newSubmission({ backend: 'dirac', job_ids: ['811', '812', '813'], count: 3 }, now - 600));
  await saveSubmission(pilotsPool, newSubmission({ backend: 'slurm', job_ids: ['4242'], cluster: 'lofar', count: 4, auto: true }, now - 60));

  const page = await browser.context.newPage();
  await page.goto(dashboardUrl(server.url, db));
  const panel = page.getByTestId('pilots');
  await panel.getByTestId('pilot-row').first().waitFor();
  assert.deepEqual(await panel.getByTestId('pilot-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-backend'))), ['slurm', 'dirac', 'slurm', 'glite']);
  assert.deepEqual(await panel.getByTestId('pilot-state').allTextContents().then((s) => s.map((x) => x.replace(/\(seen .*\)/, '').trim())), [
    'unknown: squeue unavailable',
    'unknown: grid pilot',
    'all finished',
    'unknown: grid pilot',
  ]);
  assert.equal(await panel.getByTestId('pilot-totals').textContent(), '· 0 queued, 0 running, 5 finished, 9 unknown');
  assert.match((await panel.getByTestId('grid-note').textContent()) ?? '', /state unknown/);
  assert.match((await panel.getByTestId('slurm-note').textContent()) ?? '', /squeue/);
  assert.match((await panel.locator('tbody tr').first().textContent()) ?? '', /\(auto\)/);
  await page.close();
});

/** A run of three steps over 4 subbands: a per subband, b per subband needing a, c over all of b. */
async function pipelineRun(runPool: Pool): Promise<{ run: string; tokens: Map<string, Token> }> {
  await initDatabase(runPool, { guard: true });
  const files = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-dash-run-'));
  const def = path.join(files, 'three.yaml');
  fs.writeFileSync(
    def,
    `name: three
observations: [obs]
steps:
  - {name: a, observation: obs, surls: true, command: 'true', max_attempts: 1}
  - {name: b, observation: obs, needs: [{step: a, take: subband}], command: 'true'}
  - {name: c, observation: obs, per: observation, needs: [{step: b}], command: 'true'}
`,
  );
  const surls = path.join(files, 'L500.surls');
  fs.writeFileSync(surls, [0, 1, 2, 3].map((sb) => pathToFileURL(path.join(files, `L500_SB00${sb}_uv.MS_0000abcd.dat`)).href).join('\n') + '\n');
  const plan = await prepareRun({ file: def, obs: ['obs=L500'], surls: [`obs=${surls}`], sets: [], staging: false });
  await writeRun(runPool, plan);
  fs.rmSync(files, { recursive: true, force: true });
  const rows = await runPool.db.list({ include_docs: true });
  const tokens = new Map(rows.rows.map((r) => r.doc as unknown as Token).filter((t) => t.pipeline).map((t) => [t._id.slice(plan.run.run.length + 1), t]));
  return { run: plan.run.run, tokens };
}

/** What an agent does when a token ends: claim, store the outcome, release (or block) its dependents. */
async function finishToken(runPool: Pool, t: Token, outcome: Pick<Outcome, 'result' | 'exitCode' | 'reason'>): Promise<void> {
  const who = { owner: 'test-agent', hostname: 'test', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } };
  const mine = await writeClaim(runPool.db, claim(t, who, 600, nowSeconds()));
  assert.ok(mine, `claimed ${t._id}`);
  const output = outcome.result === 'done' ? [{ url: `file:///results/${t._id}.tar`, size: 10, adler32: '0000abcd' }] : undefined;
  const written = await recordOutcome(runPool.db, t._id, mine.lease!.claim_id, { ...outcome, end: nowSeconds(), phases: {}, output });
  assert.ok(written);
  await releaseDependents(runPool.db, written, null, createLogger('test', { level: 'silent', pretty: false }));
}

test('a pipeline run: steps in order with progress per state, blocked counts, and the failure that blocks them', async () => {
  const db = 'lofar-pipeline';
  const runPool = openPool({ db: `${server.url}/${db}`, user: server.admin.name, password: server.admin.password });
  const { run, tokens } = await pipelineRun(runPool);
  const failedId = tokens.get('L500_a_SB001')!._id;
  await finishToken(runPool, tokens.get('L500_a_SB000')!, { result: 'done', exitCode: 0, reason: 'done' });
  await finishToken(runPool, tokens.get('L500_a_SB001')!, { result: 'fatal', exitCode: 3, reason: 'exit code 3' });

  const page = await browser.context.newPage();
  await page.goto(dashboardUrl(server.url, db));
  const card = page.getByTestId(`run-${run}`);
  await card.waitFor();
  assert.deepEqual(await card.locator('tr[data-testid^="run-step-"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-testid'))), ['run-step-a', 'run-step-b', 'run-step-c']);
  const cell = (step: string, what: string) => card.getByTestId(`run-step-${step}`).getByTestId(what).textContent();
  // a: 1 of 4 done, 1 failed; b: the failed subband's dependent blocked, the done one's released; c (all of b): blocked in turn
  assert.equal(await cell('a', 'done'), '1');
  assert.equal(await cell('a', 'failed'), '1');
  assert.match((await cell('a', 'progress')) ?? '', /^1\/4 · 25%$/);
  assert.deepEqual(await card.getByTestId('run-step-a').locator('.seg').evaluateAll((s) => s.map((x) => x.getAttribute('data-state'))), ['done', 'error', 'todo']);
  assert.equal(await cell('b', 'blocked'), '1');
  assert.match((await cell('b', 'progress')) ?? '', /^0\/4 · 0%$/);
  assert.equal(await cell('c', 'blocked'), '1');
  assert.deepEqual(await card.getByTestId('run-step-c').locator('.seg').evaluateAll((s) => s.map((x) => x.getAttribute('data-state'))), ['blocked']);

  // the failure: its token id, reason, and what it blocks
  const failures = card.getByTestId('run-failures');
  assert.deepEqual(await failures.locator('tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-testid'))), [`run-failure-${failedId}`]);
  const row = failures.getByTestId(`run-failure-${failedId}`);
  assert.match((await row.textContent()) ?? '', /exit code 3/);
  assert.equal(await row.getByTestId('blocks').textContent(), '1 token of b, and what needs them');
  assert.equal(await card.getByTestId('run-failures-more').count(), 0);

  // another subband done over the database: the page follows without a reload
  await finishToken(runPool, tokens.get('L500_a_SB002')!, { result: 'done', exitCode: 0, reason: 'done' });
  await page.waitForFunction(`document.querySelector('[data-testid="run-step-a"] [data-testid="progress"]')?.textContent === '2/4 · 50%'`, undefined, { timeout: 60_000 });
  assert.equal(await cell('b', 'done'), '0');
  assert.match((await card.getByTestId('run-step-b').textContent()) ?? '', /b\s*subband\s*a/);

  fs.mkdirSync('test-artifacts', { recursive: true });
  await page.screenshot({ path: 'test-artifacts/dashboard-pipeline.png', fullPage: true });
  await page.close();
});
