/**
 * Retries that can finish (issue #15): real agents staging out to a real WebDAV storage element (nginx).
 * An agent killed with -9 after publishing its results, before recording the outcome, and `tokens
 * reset` of tokens that agents are running: every token ends done with one published output, which the
 * token describes; data the token did not produce stays protected (test/node-transfer.test.ts).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, test } from 'vitest';
import { isActive } from '../server/lease.js';
import { resetTokens } from '../server/tokens/reset.js';
import type { Token } from '../server/token.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { zlibAdler32File as pyAdler32 } from './helpers/zlib-adler32.js';

let server: TestServer;
let nginx: Nginx;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  nginx = await startNginx();
  dir = tempDir('stage-out-retry');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await nginx?.close();
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function agent(...args: Parameters<typeof startAgent>): AgentProcess {
  const a = startAgent(...args);
  agents.push(a);
  return a;
}

/** The token's output is what lies on the storage element, and nothing else lies beside it. */
function assertPublished(t: Token, dir: string): void {
  assert.equal(t.status, 'done', `${t._id}: ${t.reason}`);
  assert.equal(t.output.length, 1, t._id);
  const stored = path.join(nginx.root, new URL(t.output[0]!.url).pathname);
  assert.equal(fs.statSync(stored).size, t.output[0]!.size, t._id);
  assert.equal(pyAdler32(stored), t.output[0]!.adler32, t._id);
  const kept = t.stage_out_uploads!.find((u) => u.attempt === t.output[0]!.attempt && u.url === t.output[0]!.url);
  assert.ok(kept, `${t._id}: the output names the attempt whose upload it is`);
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.startsWith(t._id)),
    [`${t._id}.tar`],
    `${t._id}: one published file, no attempt's upload beside it`,
  );
}

/**
 * A proxy in front of nginx that kills the agent with -9 right after nginx has published an upload (its
 * MOVE answered), before the agent hears of it: the moment between stage-out and the recorded outcome.
 */
async function killingProxy(victim: () => AgentProcess | undefined): Promise<{ url: string; killed: () => boolean; close: () => Promise<void> }> {
  let killed = false;
  const proxy = http.createServer((req, res) => {
    const upstream = http.request(`${nginx.url}${req.url}`, { method: req.method, headers: req.headers }, (up) => {
      const a = victim();
      if (req.method === 'MOVE' && !killed && a && (up.statusCode === 201 || up.statusCode === 204)) {
        killed = true;
        a.child.kill('SIGKILL');
        up.resume();
        req.socket.destroy();
        return;
      }
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    killed: () => killed,
    close: () => new Promise<void>((r) => proxy.close(() => r())),
  };
}

test('an agent killed with -9 after publishing its results: the reclaimed attempt finishes the token, with one published output', async () => {
  const tp = await freshPool(server);
  let first: AgentProcess | undefined;
  const proxy = await killingProxy(() => first);
  try {
    const [t] = await addTokens(tp.pool, [
      { obsid: 'L301', step: 'cal', subbands: [1], command: 'echo "attempt $ATTEMPT" > "$OUTPUT_DIR/solutions.txt"', results: `${proxy.url}/killed/\${TOKEN_ID}.tar` },
    ]);
    first = agent(tp, ['--lease', '3', '--idle-exit', '30', '--poll', '1', '--workdir', path.join(dir, 'first')]);
    const ended = await first.exited;
    assert.equal(ended.signal, 'SIGKILL', first.logs().slice(-2000));
    assert.ok(proxy.killed());
    const published = path.join(nginx.root, 'killed', `${t!._id}.tar`);
    assert.ok(fs.existsSync(published), 'the first attempt published its results before it died');
    assert.ok(isActive(((await tp.pool.db.get(t!._id)) as Token).status), 'and recorded no outcome');

    const second = agent(tp, ['--lease', '3', '--idle-exit', '3', '--poll', '1', '--workdir', path.join(dir, 'second')]);
    assert.equal((await second.exited).code, 0, second.logs().slice(-3000));
    const done = (await tp.pool.db.get(t!._id)) as Token;
    assertPublished(done, path.join(nginx.root, 'killed'));
    assert.equal(done.output[0]!.attempt, 2, "the second attempt's output was kept");
    assert.deepEqual(done.history.map((h) => [h.attempt, h.reason]), [[1, 'lease expired'], [2, 'done']]);
    assert.deepEqual(done.stage_out_uploads!.map((u) => u.attempt), [1, 2], 'both uploads recorded, the first before it was published');
    assert.ok(second.events().some((e) => e.msg?.toString().startsWith('an earlier attempt of this token published') && e.earlier_attempt === 1));
  } finally {
    await proxy.close();
  }
});

test('tokens reset while agents run them: every token ends done, each with one published output', async () => {
  const tp = await freshPool(server);
  const count = 8;
  const specs = Array.from({ length: count }, (_, i) => ({
    obsid: 'L302',
    step: 'cal',
    subbands: [i],
    // Short enough that no phase write tells the agent of the reset before it stages out.
    command: 'sleep 0.6; echo "attempt $ATTEMPT of $TOKEN_ID" > "$OUTPUT_DIR/solutions.txt"',
    results: `${nginx.url}/reset/\${TOKEN_ID}.tar`,
    max_attempts: 10,
  }));
  await addTokens(tp.pool, specs);
  const started = [1, 2, 3].map((n) => agent(tp, ['--lease', '60', '--idle-exit', '4', '--poll', '1', '--workdir', path.join(dir, `reset-${n}`)]));
  let resets = 0;
  for (let round = 0; round < 4; round++) {
    const active = await waitFor('a token being run, or all done', async () => {
      const tokens = await allTokens(tp.pool);
      const ids = tokens.filter((t) => isActive(t.status)).map((t) => t._id);
      return ids.length > 0 || tokens.every((t) => t.status === 'done') ? ids : null;
    });
    if (active.length === 0) break;
    const report = await resetTokens(tp.pool, { ids: active });
    resets += report.changed;
    await new Promise((r) => setTimeout(r, 400));
  }
  assert.ok(resets > 0);
  for (const a of started) assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  const tokens = await allTokens(tp.pool);
  assert.equal(tokens.length, count);
  for (const t of tokens) assertPublished(t, path.join(nginx.root, 'reset'));
  assert.ok(tokens.some((t) => t.reason === null && t.scrub_count > 0), 'some tokens were reset while running');
});
