/** What goes wrong in a step or a token, with real agent processes and real signals. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, freshPool, killAgent, startAgent, tempDir, unguardedPool, waitFor, type AgentProcess } from './helpers/agent.js';
import { EXIT, newToken, type Token } from '../server/token.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('fail');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function agent(...args: Parameters<typeof startAgent>): AgentProcess {
  const a = startAgent(...args);
  agents.push(a);
  return a;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a failing step is retried up to max_attempts, then error with every attempt in history and logs attached', async () => {
  const tp = await freshPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L200', step: 'cal', subbands: [1], max_attempts: 3, command: 'echo "try $ATTEMPT"; echo "bad input" >&2; exit 3' }]);
  const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--workdir', path.join(dir, 'retry')]);
  assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'error');
  assert.equal(stored.exit_code, 3);
  assert.equal(stored.reason, 'exit code 3 three times');
  assert.deepEqual(stored.history.map((h) => [h.attempt, h.exit_code, h.reason]), [[1, 3, 'exit code 3'], [2, 3, 'exit code 3'], [3, 3, 'exit code 3']]);
  assert.equal(new Set(stored.history.map((h) => h.claim_id)).size, 3);
  for (const h of stored.history) assert.ok(h.end! >= h.start && typeof h.phases?.running === 'number');
  const out = (await tp.pool.db.attachment.get(t!._id, 'logs_3.out')).toString();
  const err = (await tp.pool.db.attachment.get(t!._id, 'logs_3.err')).toString();
  assert.equal(out, 'try 3\n');
  assert.equal(err, 'bad input\n');
  const events = a.events().filter((e) => e.token === t!._id);
  assert.ok(events.some((e) => e.msg === 'recorded: error' && e.attempt === 3), 'a log line per lifecycle event');
});

test('a step over its time limit has its whole process tree killed', async () => {
  const tp = await freshPool(server);
  const pidFile = path.join(dir, 'grandchild.pid');
  const command = `sh -c 'echo $$ > ${pidFile}; exec sleep 300' & wait`;
  const [t] = await addTokens(tp.pool, [{ obsid: 'L201', step: 'cal', subbands: [1], max_attempts: 1, requirements: { time_limit_s: 2 }, command }]);
  const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--grace', '2', '--workdir', path.join(dir, 'limit')]);
  assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'error');
  assert.equal(stored.exit_code, EXIT.timeLimit);
  assert.match(stored.history[0]!.reason, /time limit of 2 s exceeded/);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  assert.ok(pid > 0);
  await waitFor('the grandchild to be gone', () => !alive(pid), 10_000);
});

test('SIGTERM: the step is stopped, the token goes back to todo as preempted, the agent exits 0 within the grace period', async () => {
  const tp = await freshPool(server);
  // The step ignores TERM, so the agent must escalate to KILL within its grace period.
  const [t] = await addTokens(tp.pool, [{ obsid: 'L202', step: 'cal', subbands: [1], command: "trap '' TERM; sleep 120" }]);
  const a = agent(tp, ['--grace', '4', '--workdir', path.join(dir, 'term')]);
  await waitFor('the step to run', async () => ((await tp.pool.db.get(t!._id)) as Token).status === 'running');
  const sent = Date.now();
  a.child.kill('SIGTERM');
  const exit = await a.exited;
  const took = (Date.now() - sent) / 1000;
  assert.equal(exit.code, 0, a.logs().slice(-2000));
  assert.ok(took <= 4 + 1, `exited after ${took} s, grace 4 s`);
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'todo');
  assert.equal(stored.lock, 0);
  assert.equal(stored.lease, null);
  assert.equal(stored.reason, 'preempted');
  assert.equal(stored.attempts, 0, 'a preemption does not use up an attempt');
  assert.deepEqual(stored.history.map((h) => h.reason), ['preempted']);
});

test('a malformed token is marked error naming the field, and the agent carries on with the next', async () => {
  const tp = await unguardedPool(server);
  const bad = { ...newToken({ obsid: 'L203', step: 'cal', subbands: [1], command: 'true' }), obsid: 'not-an-obsid' };
  await tp.pool.db.insert(bad as Token);
  const [good] = await addTokens(tp.pool, [{ obsid: 'L203', step: 'cal', subbands: [2], command: 'true', priority: -1 }]);
  const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--workdir', path.join(dir, 'malformed')]);
  assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
  const marked = (await tp.pool.db.get(bad._id)) as Token;
  assert.equal(marked.status, 'error');
  assert.equal(marked.exit_code, EXIT.malformedToken);
  assert.match(marked.reason!, /malformed token: obsid: must look like L229507/);
  assert.equal(((await tp.pool.db.get(good!._id)) as Token).status, 'done');
});

test('bad flags: a clear error naming the flag, exit 2, nothing claimed', async () => {
  const tp = await freshPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L204', step: 'cal', subbands: [1], command: 'true' }]);
  const a = agent(tp, ['--slots', 'many']);
  assert.equal((await a.exited).code, 2);
  assert.match(a.logs(), /--slots must be a positive whole number or "auto", got many/);
  assert.equal(((await tp.pool.db.get(t!._id)) as Token).status, 'todo');
});
