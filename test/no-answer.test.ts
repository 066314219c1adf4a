/**
 * A server that takes connections and never answers (a stuck proxy or load balancer): every verb
 * ends with a clear error and exit 3, the agent gives up at start with exit 3, and an agent whose
 * database falls silent mid-run journals its outcome and records it once the database answers again.
 * A server that is alive but slow to answer one request is waited for. No timing is asserted: the
 * deadlines are what ends each case, and the vitest limits only catch a hang.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { runCli } from './helpers/cli.js';
import { silentServer, freezingRelay, type SilentServer } from './helpers/silent-server.js';
import { BACKEND, startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess, type TestPool } from './helpers/agent.js';
import { createReader } from '../server/status/reader.js';

const dir = tempDir('no-answer');
const agents: AgentProcess[] = [];
let silent: SilentServer;
let server: TestServer;
// The silent server is not a backend: those cases run once, in the embedded project.
const notBackendBound = BACKEND !== 'embedded';

beforeAll(async () => {
  silent = await silentServer();
  server = await startTestServer();
});
afterAll(async () => {
  agents.forEach(killAgent);
  await silent?.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const silentDb = () => `http://127.0.0.1:${silent.port}/pool`;
const creds = () => {
  const file = path.join(dir, 'creds.json');
  fs.writeFileSync(file, JSON.stringify({ name: 'viewer', password: 'never-shown-pw-93' }), { mode: 0o600 });
  return file;
};

for (const verb of [['status'], ['status', '--watch'], ['tokens', 'list'], ['failures'], ['db', 'init'], ['db', 'user', 'list']]) {
  test(`tokenpool ${verb.join(' ')} against a server that never answers: a clear error, exit 3`, { skip: notBackendBound, timeout: 120_000 }, async () => {
    const r = await runCli([...verb, '--db', silentDb(), '--credentials', creds(), '--db-timeout', '1'], { timeoutMs: 100_000 });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`error: no answer from http://127\\.0\\.0\\.1:${silent.port}/pool within 1 s: the server accepts connections but does not answer`));
    assert.match(r.stderr, /--db-timeout/);
    assert.ok(!r.stderr.includes('never-shown-pw-93'));
  });
}

test('the default deadline applies without --db-timeout', { skip: notBackendBound, timeout: 180_000 }, async () => {
  const r = await runCli(['status', '--db', silentDb(), '--credentials', creds()], { timeoutMs: 150_000 });
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stderr, /error: no answer from .* within 10 s/);
});

test('--db-timeout must be a positive number of seconds (exit 2)', { skip: notBackendBound, timeout: 60_000 }, async () => {
  const r = await runCli(['status', '--db', silentDb(), '--db-timeout', '0']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--db-timeout 0 is not a number of seconds above 0/);
});

test('an agent started against a server that never answers says so and exits 3', { skip: notBackendBound, timeout: 180_000 }, async () => {
  const a = startAgent({ dbUrl: silentDb(), credentials: creds() } as TestPool, ['--db-timeout', '1', '--workdir', path.join(dir, 'a0')]);
  agents.push(a);
  const { code } = await a.exited;
  assert.equal(code, 3, a.logs());
  const warnings = a.events().filter((e) => e.msg === 'database unreachable at start');
  assert.ok(warnings.length >= 1, a.logs());
  assert.match(String(warnings[0]!.err), /ENOANSWER: http:\/\/127\.0\.0\.1:\d+ took the connection but sent no answer within 1 s/);
  assert.match(a.logs(), /no answer from http:\/\/127\.0\.0\.1:\d+\/pool within 1 s/);
});

test('a server that is slow but alive is waited for beyond the deadline', { skip: notBackendBound, timeout: 60_000 }, async () => {
  const slow = http.createServer((req, res) => {
    const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    if (req.url === '/') answer();
    else setTimeout(answer, 3000);
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  try {
    const port = (slow.address() as { port: number }).port;
    const reader = createReader({ dbUrl: `http://127.0.0.1:${port}/pool`, dbName: 'pool', authorization: null, quietMs: 500 });
    assert.deepEqual(await reader.get('_design/tokenpool/_view/progress'), { ok: true });
  } finally {
    slow.closeAllConnections();
    await new Promise((resolve) => slow.close(resolve));
  }
});

test('the database falls silent while a step runs: the outcome is journaled and recorded once it answers', { timeout: 240_000 }, async () => {
  const tp = await freshPool(server);
  const relay = await freezingRelay(tp.dbUrl);
  try {
    const [t] = await addTokens(tp.pool, [{ obsid: 'L300', step: 'cal', subbands: [1], command: 'sleep 4' }]);
    const a = startAgent({ ...tp, nodeUrls: [relay.url(tp.dbUrl)] }, ['--db-timeout', '1', '--poll', '1', '--lease', '120', '--idle-exit', '2', '--workdir', path.join(dir, 'a1')]);
    agents.push(a);
    // The step itself, not the claim: on a cluster the claim's fence reads come first.
    await waitFor('the step running', () => a.events().some((e) => e.msg === 'phase running'), 120_000);
    relay.freeze();
    await waitFor('the outcome in the journal', () => a.events().some((e) => e.msg === 'database unreachable: outcome kept in the local journal'), 120_000);
    assert.match(a.logs(), /ENOANSWER/);
    relay.thaw();
    await waitFor('the journaled outcome recorded', () => a.events().some((e) => e.msg === 'journaled outcome recorded'), 120_000);
    const { code } = await a.exited;
    assert.equal(code, 0, a.logs());
    const [stored] = (await allTokens(tp.pool)).filter((x) => x._id === t!._id);
    assert.equal(stored!.status, 'done');
  } finally {
    await relay.close();
  }
});
