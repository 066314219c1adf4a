/**
 * The dashboard in a real browser (Debian's headless Chromium): the figures shown are the views'
 * answers, a token finished over HTTP shows up without a reload, and the page never sees a secret.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedServer, type EmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool, type Pool } from '../server/client.js';
import { dashboardRoutes, dashboardUrl } from '../server/dashboard/index.js';
import { nowSeconds, type Token } from '../server/token.js';
import { seedPool } from './helpers/status-fixture.js';
import { launchBrowser, type Browser } from './helpers/browser.js';

let server: EmbeddedServer;
let dataDir: string;
let pool: Pool;
let browser: Browser;
const DB = 'lofar-dashboard';

before(async () => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-dash-'));
  const log = createLogger('test-server', { pretty: false, level: 'warn' });
  server = await startEmbeddedServer({ port: 0, dataDir, inMemory: true, routes: dashboardRoutes(), log });
  pool = openPool({ db: `${server.url}/${DB}`, user: server.admin.name, password: server.admin.password });
  await seedPool(pool, { obsids: ['L100001', 'L100002'], steps: ['avg', 'cal'], perStep: 30 });
  browser = await launchBrowser({ httpCredentials: { username: server.admin.name, password: server.admin.password } });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

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

  // a token in error: its attempt history and log tail
  await page.getByTestId('cell-L100001-avg-error').click();
  await page.getByTestId('token-list').locator('tbody a').first().click();
  const detail = page.getByTestId('token-detail');
  await detail.locator('pre.log').waitFor();
  assert.match((await detail.locator('pre.log').textContent()) ?? '', /FATAL: /);
  assert.equal(await detail.getByTestId('detail-status').textContent(), 'error');

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
