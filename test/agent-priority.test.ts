/**
 * Priority first (issue #15): among claimable tokens agents take the higher priority first, random only
 * among equals. Few tokens and many agents is where a window shuffled as a whole took priority -1
 * tokens while priority 0 ones waited.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, test } from 'vitest';
import type { Token } from '../server/token.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, type AgentProcess } from './helpers/agent.js';
import { startTestServer, type TestServer } from './helpers/server.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('priority');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('six agents taking one token each from 3 of priority 0 and 9 of priority -1 take the three priority 0 tokens', async () => {
  const tp = await freshPool(server);
  const spec = (i: number, priority: number) => ({ obsid: 'L400', step: 'cal', subbands: [i], priority, command: 'sleep 0.3' });
  // The urgent ones added last, so that creation order does not put them first by itself.
  await addTokens(tp.pool, [...Array.from({ length: 9 }, (_, i) => spec(i, -1)), ...[20, 21, 22].map((i) => spec(i, 0))]);
  await tp.pool.db.view('tokenpool', 'claimable', { limit: 1 }); // the index built before the agents look
  const started = Array.from({ length: 6 }, (_, n) => {
    const a = startAgent(tp, ['--max-tokens', '1', '--workdir', path.join(dir, `a${n}`)]);
    agents.push(a);
    return a;
  });
  for (const a of started) assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
  const tokens = await allTokens(tp.pool);
  const taken = tokens.filter((t: Token) => t.attempts > 0);
  assert.equal(taken.length, 6);
  assert.deepEqual(
    tokens.filter((t) => t.priority === 0).map((t) => [t._id, t.status]),
    ['L400_cal_SB020', 'L400_cal_SB021', 'L400_cal_SB022'].map((id) => [id, 'done']),
    'every priority 0 token was taken before any priority -1 token was left waiting',
  );
  assert.equal(tokens.filter((t) => t.priority === -1 && t.status === 'done').length, 3);
});
