/**
 * Writes per token: a token whose phases do nothing costs two writes (claim, outcome, with the log
 * tails inline); a phase that lasts shows on the token while it runs. Counted from the revision
 * history of each token (one revision per write) with a real agent process.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import type { Token } from '../server/token.js';
import type { Pool } from '../server/client.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('writes');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Every stored revision of the token, oldest first. */
async function revisions(pool: Pool, id: string): Promise<Token[]> {
  const doc = (await pool.db.get(id, { revs: true })) as Token & { _revisions: { start: number; ids: string[] } };
  const out: Token[] = [];
  for (let i = doc._revisions.ids.length - 1; i >= 0; i--) out.push((await pool.db.get(id, { rev: `${doc._revisions.start - i}-${doc._revisions.ids[i]}` })) as Token);
  return out;
}

test('a no-op token costs two writes: the claim and the outcome with its log tails', async () => {
  const tp = await freshPool(server);
  const tokens = await addTokens(tp.pool, Array.from({ length: 3 }, (_, i) => ({ obsid: 'L400', step: 'cal', subbands: [i], command: 'echo hello; echo oops >&2' })));
  const a = startAgent(tp, ['--idle-exit', '1', '--poll', '1', '--workdir', dir]);
  agents.push(a);
  assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  for (const t of tokens) {
    const revs = await revisions(tp.pool, t._id);
    assert.deepEqual(revs.map((r) => r.status), ['todo', 'locked', 'done'], `${t._id}: one claim, one outcome`);
    const done = revs[2]!;
    assert.ok(done.times.running! >= done.times.locked! && done.times.done! >= done.times.running!, 'phase start times recorded with the outcome');
    assert.equal(typeof done.history[0]!.phases?.running, 'number');
    const out = (await tp.pool.db.attachment.get(t._id, 'logs_1.out')).toString();
    const err = (await tp.pool.db.attachment.get(t._id, 'logs_1.err')).toString();
    assert.equal(out, 'hello\n');
    assert.equal(err, 'oops\n');
  }
});

test('a step that lasts shows running on the token while it runs, with the time it began', async () => {
  const tp = await freshPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L401', step: 'cal', subbands: [1], command: 'sleep 4' }]);
  const a = startAgent(tp, ['--idle-exit', '1', '--poll', '1', '--workdir', dir]);
  agents.push(a);
  const running = await waitFor('running on the token', async () => {
    const doc = (await tp.pool.db.get(t!._id)) as Token;
    return doc.status === 'running' && doc;
  });
  assert.ok(running.times.running! >= running.times.locked!);
  assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  const revs = await revisions(tp.pool, t!._id);
  assert.deepEqual(revs.map((r) => r.status), ['todo', 'locked', 'running', 'done']);
  assert.equal(revs[3]!.times.running, running.times.running, 'the outcome keeps the time the phase began');
});
