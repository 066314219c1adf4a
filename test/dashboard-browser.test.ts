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
