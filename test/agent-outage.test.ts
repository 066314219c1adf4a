/**
 * Never lose a result: the database goes away while steps run (outcomes go to the local journal and
 * are replayed once it is back, also by a restarted agent), and a 409 on the final save is re-applied.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BACKEND, COUCHDB_KIT, startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import type { Token } from '../server/token.js';

const dir = tempDir('outage');
const agents: AgentProcess[] = [];
let server: TestServer;
// Real CouchDB nodes are stopped and started with the CouchDB test kit's scripts.
// Without COUCHDB_TEST_KIT (a CouchDB started by hand) these tests cannot stop a node, and are skipped.
const outages = BACKEND !== 'embedded' && !COUCHDB_KIT;
beforeAll(async () => {
  server = await startTestServer({ inMemory: false });
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.startNode().catch(() => undefined);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('database stopped mid-run and restarted: outcomes journaled, replayed, nothing lost or stuck', { skip: outages }, async () => {
  const tp = await freshPool(server);
  // On a cluster the agent talks to the node that goes down.
  tp.nodeUrls = [tp.dbUrl];
  const pool = tp.pool;
  const shared = path.join(dir, 'runs.txt');
  await addTokens(pool, Array.from({ length: 3 }, (_, i) => ({ obsid: 'L300', step: 'cal', subbands: [i], command: `sleep 3; echo "$TOKEN_ID" >> ${shared}` })));
  const a = startAgent(tp, ['--slots', '3', '--lease', '60', '--poll', '1', '--idle-exit', '3', '--workdir', path.join(dir, 'w1')]);
  agents.push(a);
  await waitFor('three running steps', async () => (await allTokens(pool)).filter((t) => t.status === 'running').length === 3);

  await server.stopNode(0);
  await waitFor('the outcomes to be journaled', () => a.logs().split('outcome kept in the local journal').length - 1 === 3, 60_000);
  await server.startNode(0);

  const exit = await a.exited;
  assert.equal(exit.code, 0, a.logs().slice(-3000));
  assert.ok(a.logs().includes('journaled outcome recorded'));
  const stored = await allTokens(pool);
  assert.deepEqual(stored.map((t) => t.status), ['done', 'done', 'done'], JSON.stringify(stored.map((t) => [t._id, t.status, t.history])));
  for (const t of stored) assert.deepEqual(t.history.map((h) => h.reason), ['done']);
  assert.equal(fs.readFileSync(shared, 'utf8').trim().split('\n').length, 3);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'w1', 'journal')), []);
});

test('an agent stopped while its outcome is only journaled: the next agent on the node replays it first', { skip: outages }, async () => {
  const tp = await freshPool(server);
  tp.nodeUrls = [tp.dbUrl];
  const pool = tp.pool;
  const [t] = await addTokens(pool, [{ obsid: 'L301', step: 'cal', subbands: [1], command: 'sleep 4' }]);
  const workdir = path.join(dir, 'w2');
  const a = startAgent(tp, ['--lease', '60', '--workdir', workdir]);
  agents.push(a);
  await waitFor('the step to run', async () => ((await pool.db.get(t!._id)) as Token).status === 'running');
  await server.stopNode(0);
  await waitFor('the outcome to be journaled', () => a.logs().includes('outcome kept in the local journal'), 60_000);
  a.child.kill('SIGTERM');
  assert.equal((await a.exited).code, 0);
  assert.equal(fs.readdirSync(path.join(workdir, 'journal')).filter((f) => f.endsWith('.json')).length, 1);

  await server.startNode(0);
  const b = startAgent(tp, ['--idle-exit', '1', '--poll', '1', '--workdir', workdir]);
  agents.push(b);
  assert.equal((await b.exited).code, 0, b.logs().slice(-3000));
  const stored = (await pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'done');
  assert.deepEqual(stored.history.map((h) => h.reason), ['done']);
  const replayed = b.events().findIndex((e) => e.msg === 'journaled outcome recorded');
  assert.ok(replayed >= 0, 'the second agent replayed the journal');
});

test('a 409 on the final save (the token changed under the agent) is re-applied, keeping both changes', async () => {
  const tp = await freshPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L302', step: 'cal', subbands: [1], command: 'sleep 3' }]);
  const a = startAgent(tp, ['--lease', '60', '--idle-exit', '1', '--poll', '1', '--workdir', path.join(dir, 'w3')]);
  agents.push(a);
  const running = await waitFor('the step to run', async () => {
    const doc = (await tp.pool.db.get(t!._id)) as Token;
    return doc.status === 'running' && doc;
  });
  await tp.pool.db.insert({ ...running, note: 'edited while running' } as Token);
  assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'done');
  assert.equal(stored.note, 'edited while running');
  assert.deepEqual(stored.history.map((h) => h.reason), ['done']);
});
