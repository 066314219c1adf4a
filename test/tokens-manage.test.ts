/**
 * list, show, reset, delete and attach against a real embedded server, including a reset that
 * races an agent's write (409) and deletion rights.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import type { Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { newToken, nowSeconds, type Token } from '../server/token.js';
import { updateTokens } from '../server/tokens/update.js';
import { resetToken } from '../server/tokens/reset.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

let server: TestServer;
let tmp: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startTestServer();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-manage-test-'));
  env = { TOKENPOOL_CREDENTIALS: server.adminCredentialsFile() };
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const HOUR = 3600;

/** 4 todo, 3 error (one from another step), 2 locked (one stale for 3 h), 1 done. */
async function seed(): Promise<{ dbUrl: string; pool: Pool }> {
  const dbUrl = server.newDbUrl('manage');
  const pool = server.adminPool(dbUrl);
  await initDatabase(pool, { guard: true });
  const t = nowSeconds();
  const tok = (sb: number, step: string, f: Partial<Token>): Token => ({ ...newToken({ obsid: 'L229507', step, subbands: [sb] }, t - 5 * HOUR), updated: t, ...f });
  const attempt = { attempt: 1, claim_id: 'c1', owner: 'pilot-1', hostname: 'wn1', batch_job_id: '77_1', start: t - 2 * HOUR, end: t - HOUR, exit_code: 1, reason: 'exit code 1' };
  const failed = { status: 'error' as const, lock: t - 2 * HOUR, done: t - HOUR, exit_code: 1, attempts: 1, hostname: 'wn1', reason: 'exit code 1', history: [attempt] };
  const docs = [
    ...[1, 2, 3, 4].map((sb) => tok(sb, 'cal1', {})),
    tok(5, 'cal1', failed),
    tok(6, 'cal1', { ...failed, attempts: 3 }),
    tok(7, 'target', failed),
    tok(8, 'cal1', { status: 'running', lock: t - 3 * HOUR, updated: t - 3 * HOUR, hostname: 'wn2', lease: { owner: 'pilot-2', claim_id: 'c2', expires: t - 2 * HOUR, heartbeat: t - 3 * HOUR } }),
    tok(9, 'cal1', { status: 'running', lock: t - 60, hostname: 'wn3', lease: { owner: 'pilot-3', claim_id: 'c3', expires: t + HOUR, heartbeat: t } }),
    tok(10, 'cal1', { status: 'done', lock: t - 2 * HOUR, done: t - HOUR, exit_code: 0, attempts: 1 }),
  ];
  const res = await pool.db.bulk({ docs });
  assert.ok(res.every((r) => !r.error), JSON.stringify(res));
  return { dbUrl, pool };
}

const get = async (pool: Pool, sb: number, step = 'cal1') => (await pool.db.get(`L229507_${step}_SB${String(sb).padStart(3, '0')}`)) as Token;

test('tokens list selects by status, observation and step; show gives fields and history', async () => {
  const { dbUrl } = await seed();
  const list = async (...args: string[]) => {
    const r = await runCli(['tokens', 'list', '--db', dbUrl, '--json', ...args], { env });
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as Token[]).map((t) => t._id).sort();
  };
  assert.deepEqual(await list('--status', 'error'), ['L229507_cal1_SB005', 'L229507_cal1_SB006', 'L229507_target_SB007']);
  assert.deepEqual(await list('--status', 'error', '--obsid', 'L229507', '--step', 'cal1'), ['L229507_cal1_SB005', 'L229507_cal1_SB006']);
  assert.deepEqual(await list('--obsid', 'L229507', '--step', 'target'), ['L229507_target_SB007']);
  assert.deepEqual(await list('--status', 'running', '--older-than', '2h'), ['L229507_cal1_SB008']);
  assert.equal((await list('--limit', '3')).length, 3);
  assert.equal((await list()).length, 10);
  const table = await runCli(['tokens', 'list', '--status', 'error', '--db', dbUrl], { env });
  assert.match(table.stdout, /L229507_cal1_SB005\s+error\s+1\/3/);
  const bad = await runCli(['tokens', 'list', '--obsid', '229507', '--db', dbUrl], { env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--obsid "229507" is not an observation id/);

  const show = await runCli(['tokens', 'show', 'L229507_cal1_SB005', '--db', dbUrl], { env });
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /status\s+error/);
  assert.match(show.stdout, /history:\n.*#.*start.*\n\s+1\s.*wn1\s+77_1\s+1\s+exit code 1/);
});

test('tokens reset puts error tokens back to todo: scrub_count + 1, history and attempts kept', async () => {
  const { dbUrl, pool } = await seed();
  const before = await get(pool, 5);
  const r = await runCli(['tokens', 'reset', '--status', 'error', '--step', 'cal1', '--obsid', 'L229507', '--db', dbUrl, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).changed, 2);
  const after = await get(pool, 5);
  assert.equal(after.status, 'todo');
  assert.equal(after.lock, 0);
  assert.equal(after.done, 0);
  assert.equal(after.exit_code, null);
  assert.equal(after.lease, null);
  assert.equal(after.scrub_count, before.scrub_count + 1);
  assert.equal(after.attempts, 1);
  assert.deepEqual(after.history, before.history);
  assert.equal((await get(pool, 7, 'target')).status, 'error', 'another step is untouched');

  const attempts = await runCli(['tokens', 'reset', 'L229507_target_SB007', '--reset-attempts', '--db', dbUrl], { env });
  assert.equal(attempts.code, 0, attempts.stderr);
  assert.match(attempts.stdout, /reset 1 tokens to todo/);
  assert.equal((await get(pool, 7, 'target')).attempts, 0);

  // PiCaS-style cleanup: tokens of pilots that died, untouched for 2 h; the live one stays.
  const stale = await runCli(['tokens', 'reset', '--status', 'running', '--older-than', '2h', '--db', dbUrl], { env });
  assert.equal(stale.code, 0, stale.stderr);
  assert.match(stale.stdout, /reset 1 tokens/);
  assert.equal((await get(pool, 8)).status, 'todo');
  assert.equal((await get(pool, 9)).status, 'running');

  const none = await runCli(['tokens', 'reset', '--db', dbUrl], { env });
  assert.equal(none.code, 2);
  assert.match(none.stderr, /no tokens selected/);
  const unknown = await runCli(['tokens', 'reset', 'L229507_cal1_SB999', '--db', dbUrl], { env });
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no token L229507_cal1_SB999/);
});

test('a reset that races an agent re-reads the token and decides again', async () => {
  const { pool } = await seed();
  const id = 'L229507_cal1_SB005';
  let interfered = false;
  const now = nowSeconds();
  const outcome = await updateTokens(
    pool,
    [id],
    async (t) => {
      if (!interfered) {
        interfered = true;
        // An agent writes between our read and our write: our write must get 409 and retry.
        await pool.db.insert({ ...t, error: [...t.error, { time: now, message: 'agent wrote meanwhile' }] });
      }
      return t.status === 'error' ? resetToken(t, now, false) : null;
    },
    { action: 'reset tokens', role: 'tokenpool_manager' },
  );
  const t = await get(pool, 5);
  assert.equal(outcome.changed, 1);
  assert.equal(t.status, 'todo');
  assert.equal(t.error.at(-1)?.message, 'agent wrote meanwhile', "the agent's write survived");
});

test('tokens delete asks for --yes off a terminal, needs the manager role, and deletes what it selects', async () => {
  const { dbUrl, pool } = await seed();
  const refused = await runCli(['tokens', 'delete', '--step', 'target', '--db', dbUrl], { env });
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /refusing to delete 1 tokens without confirmation/);
  await get(pool, 7, 'target');

  const agentFile = path.join(tmp, `agent-${Date.now()}.json`);
  assert.equal((await runCli(['db', 'user', 'add', `agent${Date.now()}`, '--role', 'agent', '--out', agentFile, '--db', dbUrl], { env })).code, 0);
  const denied = await runCli(['tokens', 'delete', '--step', 'target', '--yes', '--db', dbUrl, '--credentials', agentFile]);
  assert.equal(denied.code, 5);
  assert.match(denied.stderr, /lacks the role tokenpool_manager/);
  await get(pool, 7, 'target');

  const ok = await runCli(['tokens', 'delete', '--step', 'target', '--yes', '--db', dbUrl, '--json'], { env });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).deleted, 1);
  await assert.rejects(pool.db.get('L229507_target_SB007'), (e: { statusCode: number }) => e.statusCode === 404);
  assert.equal((await pool.db.info()).doc_count, 3 + 9);
});

test('tokens attach stores a parset with a guessed content type; show lists it with its size', async () => {
  const { dbUrl, pool } = await seed();
  const parset = path.join(FIXTURES, 'specs', 'target.parset');
  const r = await runCli(['tokens', 'attach', 'L229507_cal1_SB001', parset, '--db', dbUrl], { env });
  assert.equal(r.code, 0, r.stderr);
  const data = await pool.db.attachment.get('L229507_cal1_SB001', 'target.parset');
  assert.equal(data.toString(), fs.readFileSync(parset, 'utf8'));
  const show = await runCli(['tokens', 'show', 'L229507_cal1_SB001', '--db', dbUrl, '--json'], { env });
  const shown = JSON.parse(show.stdout);
  assert.deepEqual(shown.attachments, [{ name: 'target.parset', content_type: 'text/plain', length: fs.statSync(parset).size }]);
  const missing = await runCli(['tokens', 'attach', 'L229507_cal1_SB999', parset, '--db', dbUrl], { env });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no token L229507_cal1_SB999/);
});
