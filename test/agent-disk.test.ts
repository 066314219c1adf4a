/**
 * A full, over-quota or read-only scratch is the node's fault: the token goes back untouched (no
 * attempt used) as a node problem naming the path and its free space, and the agent stops (exit 4).
 * On a real full file system: a 2 MiB tmpfs mounted as the agent's work directory (needs root).
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, freshPool, killAgent, startAgent, tempDir, type AgentProcess } from './helpers/agent.js';
import { EXIT, type Token } from '../server/token.js';

const asRoot = process.getuid?.() === 0;
let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];
const mounts: string[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('disk');
});
afterAll(async () => {
  agents.forEach(killAgent);
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      // already gone
    }
  }
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function agent(...args: Parameters<typeof startAgent>): AgentProcess {
  const a = startAgent(...args);
  agents.push(a);
  return a;
}

/** A 2 MiB tmpfs: small enough to fill in a test, a real file system that says ENOSPC. */
function smallDisk(name: string, opts = 'size=2m'): string {
  const m = path.join(dir, name);
  fs.mkdirSync(m);
  execFileSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', m]);
  mounts.push(m);
  return m;
}

const agentFlags = (workdir: string) => ['--idle-exit', '5', '--poll', '1', '--min-free', '1M', '--workdir', workdir];

/** The token as a node problem leaves it: todo, no attempt used, the reason naming the path and free space. */
function assertGivenBack(t: Token, what: RegExp, mount: string) {
  assert.equal(t.status, 'todo');
  assert.equal(t.attempts, 0, 'a node problem does not use up an attempt');
  assert.equal(t.lease, null);
  assert.match(t.reason!, what);
  assert.ok(t.reason!.startsWith('node problem: '), t.reason!);
  assert.ok(t.reason!.includes(mount), `the reason names the path: ${t.reason}`);
  assert.match(t.reason!, /\(\d+(\.\d)? (B|KiB|MiB) free\)/);
  assert.equal(t.history.length, 1);
  assert.equal(t.history[0]!.exit_code, EXIT.scratchUnusable);
}

test.skipIf(!asRoot)('a step that fills the scratch: the token goes back untouched as a node problem and the agent stops', async () => {
  const tp = await freshPool(server);
  const disk = smallDisk('fill');
  const [t] = await addTokens(tp.pool, [{ obsid: 'L401', step: 'cal', subbands: [1], command: 'head -c 5000000 /dev/zero > "$OUTPUT_DIR/big"' }]);
  const a = agent(tp, agentFlags(disk));
  const exit = await a.exited;
  assert.equal(exit.code, 4, a.logs().slice(-2000));
  assert.match(a.logs(), /no space left on device/);
  assertGivenBack((await tp.pool.db.get(t!._id)) as Token, /no space left on device/, disk);
});

test.skipIf(!asRoot)('a step that filled the scratch and cleaned up before failing is still recognised (the disk was watched)', async () => {
  const tp = await freshPool(server);
  const disk = smallDisk('watch');
  const command = 'head -c 5000000 /dev/zero > "$OUTPUT_DIR/big" 2>/dev/null; sleep 3; rm -f "$OUTPUT_DIR/big"; exit 1';
  const [t] = await addTokens(tp.pool, [{ obsid: 'L402', step: 'cal', subbands: [1], command }]);
  const a = agent(tp, agentFlags(disk));
  assert.equal((await a.exited).code, 4, a.logs().slice(-2000));
  assertGivenBack((await tp.pool.db.get(t!._id)) as Token, /no space left on device/, disk);
});

test.skipIf(!asRoot)("the agent's own write fails on the full scratch (a token attachment): node problem, not the token's", async () => {
  const tp = await freshPool(server);
  const disk = smallDisk('own');
  const [t] = await addTokens(tp.pool, [{ obsid: 'L403', step: 'cal', subbands: [1], command: 'true' }]);
  await tp.pool.db.attachment.insert(t!._id, 'big.parset', Buffer.alloc(3 << 20, 'x'), 'text/plain', { rev: t!._rev ?? ((await tp.pool.db.get(t!._id)) as Token)._rev });
  const a = agent(tp, agentFlags(disk));
  assert.equal((await a.exited).code, 4, a.logs().slice(-2000));
  assertGivenBack((await tp.pool.db.get(t!._id)) as Token, /no space left on device/, disk);
});

test.skipIf(!asRoot)('a full scratch before claiming: nothing is claimed, the agent exits 4 naming the path and free space', async () => {
  const tp = await freshPool(server);
  const disk = smallDisk('before');
  try {
    execFileSync('sh', ['-c', `head -c 5000000 /dev/zero > ${disk}/filler`]);
  } catch {
    // head fails with ENOSPC once the tmpfs is full: that is the point
  }
  const [t] = await addTokens(tp.pool, [{ obsid: 'L404', step: 'cal', subbands: [1], command: 'true' }]);
  const a = agent(tp, agentFlags(disk));
  assert.equal((await a.exited).code, 4, a.logs().slice(-2000));
  assert.match(a.logs(), new RegExp(`no space left on device: ${disk} \\(0 B free\\)`));
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'todo');
  assert.equal(stored.attempts, 0);
  assert.equal(stored.history.length, 0, 'never claimed');
});

test.skipIf(!asRoot)('a read-only scratch before claiming: nothing is claimed, exit 4, read-only named', async () => {
  const tp = await freshPool(server);
  const disk = smallDisk('ro', 'size=2m,ro');
  const [t] = await addTokens(tp.pool, [{ obsid: 'L405', step: 'cal', subbands: [1], command: 'true' }]);
  const a = agent(tp, agentFlags(disk));
  assert.equal((await a.exited).code, 4, a.logs().slice(-2000));
  assert.match(a.logs(), new RegExp(`read-only file system: ${disk}`));
  assert.equal(((await tp.pool.db.get(t!._id)) as Token).history.length, 0);
});
