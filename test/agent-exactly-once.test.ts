/**
 * Exactly once under contention and crashes: several real agent processes share a pool; every
 * step run appends a line to a shared file, so double runs show up even if the final states look right.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import type { Token } from '../server/token.js';
import type { Pool } from '../server/client.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('once');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** How many stored revisions of a token say "done": a second completion would leave two. */
async function doneWrites(pool: Pool, id: string): Promise<number> {
  const doc = (await pool.db.get(id, { revs: true })) as Token & { _revisions: { start: number; ids: string[] } };
  let n = 0;
  for (let i = 0; i < doc._revisions.ids.length; i++) {
    const rev = `${doc._revisions.start - i}-${doc._revisions.ids[i]}`;
    const old = (await pool.db.get(id, { rev })) as Token;
    if (old.status === 'done') n++;
  }
  return n;
}

test('4 agents x 40 tokens: every token runs and is recorded done exactly once', async () => {
  const tp = await freshPool(server);
  const shared = path.join(dir, 'runs.txt');
  const tokens = await addTokens(
    tp.pool,
    Array.from({ length: 40 }, (_, i) => ({ obsid: 'L100', step: 'cal', subbands: [i], command: `echo "$TOKEN_ID $ATTEMPT" >> ${shared}` })),
  );
  for (let i = 0; i < 4; i++) {
    agents.push(startAgent(tp, ['--slots', '2', '--idle-exit', '3', '--poll', '1', '--workdir', path.join(dir, `w${i}`)]));
  }
  const exits = await Promise.all(agents.map((a) => a.exited));
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `agent ${i} exit: ${agents[i]!.logs().slice(-2000)}`);

  const lines = fs.readFileSync(shared, 'utf8').trim().split('\n');
  assert.equal(lines.length, 40, 'one step run per token');
  assert.equal(new Set(lines.map((l) => l.split(' ')[0])).size, 40);
  const stored = await allTokens(tp.pool);
  assert.equal(stored.length, tokens.length);
  for (const t of stored) {
    assert.equal(t.status, 'done', t._id);
    assert.equal(t.history.length, 1, `${t._id} history`);
    assert.equal(t.history[0]!.reason, 'done');
    assert.equal(await doneWrites(tp.pool, t._id), 1, `${t._id}: one done write`);
  }
  // The claims were spread over the agents, not all taken by one.
  const owners = new Set(stored.map((t) => t.history[0]!.owner));
  assert.ok(owners.size >= 2, `tokens spread over ${owners.size} agents`);
});

test('kill -9 of an agent mid-step: its step dies with it, the token is reclaimed after the lease and finishes once', async () => {
  const tp = await freshPool(server);
  const shared = path.join(dir, 'crash.txt');
  const [t] = await addTokens(tp.pool, [{ obsid: 'L101', step: 'cal', subbands: [1], command: `sleep 4; echo "$TOKEN_ID $ATTEMPT" >> ${shared}` }]);
  const first = startAgent(tp, ['--lease', '3', '--workdir', path.join(dir, 'crash-a')]);
  agents.push(first);
  await waitFor('the step to run', async () => ((await tp.pool.db.get(t!._id)) as Token).status === 'running');
  first.child.kill('SIGKILL');
  await first.exited;

  const second = startAgent(tp, ['--lease', '3', '--poll', '1', '--idle-exit', '6', '--workdir', path.join(dir, 'crash-b')]);
  agents.push(second);
  const exit = await second.exited;
  assert.equal(exit.code, 0, second.logs().slice(-2000));
  // Give the killed agent's step time to have written, had it survived.
  await new Promise((r) => setTimeout(r, 2000));
  const lines = fs.readFileSync(shared, 'utf8').trim().split('\n');
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  const story = JSON.stringify({ lines, history: stored.history, first: first.logs().slice(-1500), second: second.logs().slice(-3000) });
  assert.deepEqual(lines, [`${t!._id} 2`], `only the second attempt ran to the end: ${story}`);
  assert.equal(stored.status, 'done');
  assert.equal(stored.attempts, 2);
  assert.deepEqual(stored.history.map((a) => a.reason), ['lease expired', 'done'], story);
  assert.notEqual(stored.history[0]!.claim_id, stored.history[1]!.claim_id);
  assert.equal(await doneWrites(tp.pool, t!._id), 1);
});
