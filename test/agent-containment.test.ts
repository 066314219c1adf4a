/**
 * Steps cannot escape, and their output cannot flood the agent: children that leave the step's
 * session (setsid, double fork) while holding its stdout are stopped at the time limit, on SIGTERM
 * and when the step ends; the agent waits on none of them; 200 MB of stdout keep the true tail.
 * Real agent processes, real signals; each containment net on its own (the cgroup where this
 * machine allows one, and the /proc search with --no-step-cgroup).
 */
import { afterAll, beforeAll, describe, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import { EXIT, type Token } from '../server/token.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];
const strays: number[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('contain');
});
afterAll(async () => {
  agents.forEach(killAgent);
  for (const pid of strays) if (running(pid)) process.kill(pid, 'SIGKILL');
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function agent(...args: Parameters<typeof startAgent>): AgentProcess {
  const a = startAgent(...args);
  agents.push(a);
  return a;
}

/** Alive and not a zombie (a container's PID 1 may never reap what was killed). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * A step that starts two children in sessions of their own, both holding its stdout: one by setsid
 * from the step's shell, one by a double fork. Each writes its pid to a file.
 */
function escapingStep(pidDir: string, main: string): string {
  fs.mkdirSync(pidDir, { recursive: true });
  return [
    `setsid sh -c 'echo $$ > ${pidDir}/setsid.pid; while :; do echo still here; sleep 1; done' &`,
    `(setsid sh -c 'echo $$ > ${pidDir}/fork2.pid; exec sleep 300' &)`,
    `while [ ! -s ${pidDir}/setsid.pid ] || [ ! -s ${pidDir}/fork2.pid ]; do sleep 0.1; done`,
    main,
  ].join('\n');
}

async function escapees(pidDir: string): Promise<number[]> {
  const pids = ['setsid.pid', 'fork2.pid'].map((f) => Number(fs.readFileSync(path.join(pidDir, f), 'utf8')));
  for (const pid of pids) assert.ok(pid > 0);
  strays.push(...pids);
  return pids;
}

async function exitsWithin(a: AgentProcess, ms: number, what: string) {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the agent did not exit within ${ms / 1000} s ${what}: ${a.logs().slice(-1500)}`)), ms)));
  try {
    return await Promise.race([a.exited, late]);
  } finally {
    clearTimeout(timer);
  }
}

for (const net of [
  { name: 'default containment (cgroup where allowed)', flags: [] as string[] },
  { name: '--no-step-cgroup (process group and /proc search)', flags: ['--no-step-cgroup'] },
]) {
  describe(net.name, () => {
    test('an escaping setsid child holding stdout is killed at the time limit; the token is not held', async () => {
      const tp = await freshPool(server);
      const pidDir = path.join(dir, `limit${net.flags.length}`);
      const command = escapingStep(pidDir, 'sleep 300');
      const [t] = await addTokens(tp.pool, [{ obsid: 'L301', step: 'cal', subbands: [1], max_attempts: 1, requirements: { time_limit_s: 3 }, command }]);
      const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--grace', '2', '--workdir', path.join(dir, `limit-wd${net.flags.length}`), ...net.flags]);
      // Generous: the escaped children would live 300 s.
      assert.equal((await exitsWithin(a, 90_000, 'after the time limit')).code, 0, a.logs().slice(-2000));
      const stored = (await tp.pool.db.get(t!._id)) as Token;
      assert.equal(stored.status, 'error');
      assert.equal(stored.exit_code, EXIT.timeLimit);
      assert.match(stored.history[0]!.reason, /time limit of 3 s exceeded/);
      for (const pid of await escapees(pidDir)) await waitFor(`escaped child ${pid} to be gone`, () => !running(pid), 10_000);
    });

    test('SIGTERM: escaped children are stopped, the token goes back, the agent exits within its grace', async () => {
      const tp = await freshPool(server);
      const pidDir = path.join(dir, `term${net.flags.length}`);
      const command = escapingStep(pidDir, "trap '' TERM; sleep 300");
      const [t] = await addTokens(tp.pool, [{ obsid: 'L302', step: 'cal', subbands: [1], command }]);
      const a = agent(tp, ['--grace', '4', '--workdir', path.join(dir, `term-wd${net.flags.length}`), ...net.flags]);
      await waitFor('the step to run', async () => ((await tp.pool.db.get(t!._id)) as Token).status === 'running');
      await waitFor('the escaped children to start', () => fs.existsSync(path.join(pidDir, 'fork2.pid')) && fs.statSync(path.join(pidDir, 'fork2.pid')).size > 0);
      a.child.kill('SIGTERM');
      // The grace is 4 s; the deadline here is generous (2 busy cores), the escapees would hold it for 300 s.
      assert.equal((await exitsWithin(a, 30_000, 'after SIGTERM')).code, 0, a.logs().slice(-2000));
      const stored = (await tp.pool.db.get(t!._id)) as Token;
      assert.equal(stored.status, 'todo');
      assert.equal(stored.reason, 'preempted');
      assert.equal(stored.attempts, 0);
      for (const pid of await escapees(pidDir)) await waitFor(`escaped child ${pid} to be gone`, () => !running(pid), 10_000);
    });

    test('a finished step is finished: background and escaped children do not keep it running, and are killed', async () => {
      const tp = await freshPool(server);
      const pidDir = path.join(dir, `bg${net.flags.length}`);
      const command = escapingStep(pidDir, `sleep 300 & echo $! > ${pidDir}/bg.pid; echo finished`);
      const [t] = await addTokens(tp.pool, [{ obsid: 'L303', step: 'cal', subbands: [1], command }]);
      const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--workdir', path.join(dir, `bg-wd${net.flags.length}`), ...net.flags]);
      assert.equal((await exitsWithin(a, 90_000, 'after the step finished')).code, 0, a.logs().slice(-2000));
      const stored = (await tp.pool.db.get(t!._id)) as Token;
      assert.equal(stored.status, 'done');
      const out = (await tp.pool.db.attachment.get(t!._id, 'logs_1.out')).toString();
      assert.match(out, /finished\n/);
      const bg = Number(fs.readFileSync(path.join(pidDir, 'bg.pid'), 'utf8'));
      strays.push(bg);
      for (const pid of [...(await escapees(pidDir)), bg]) await waitFor(`child ${pid} to be gone`, () => !running(pid), 10_000);
    });

    test('kill -9 of the agent: the watchdog stops the escaped children too', async () => {
      const tp = await freshPool(server);
      const pidDir = path.join(dir, `nine${net.flags.length}`);
      const [t] = await addTokens(tp.pool, [{ obsid: 'L304', step: 'cal', subbands: [1], command: escapingStep(pidDir, 'sleep 300') }]);
      const a = agent(tp, ['--grace', '1', '--workdir', path.join(dir, `nine-wd${net.flags.length}`), ...net.flags]);
      await waitFor('the step to run', async () => ((await tp.pool.db.get(t!._id)) as Token).status === 'running');
      await waitFor('the escaped children to start', () => fs.existsSync(path.join(pidDir, 'fork2.pid')) && fs.statSync(path.join(pidDir, 'fork2.pid')).size > 0);
      a.child.kill('SIGKILL');
      await a.exited;
      for (const pid of await escapees(pidDir)) await waitFor(`escaped child ${pid} to be gone`, () => !running(pid), 30_000);
    });
  });
}

test('200 MB of stdout: the token keeps the true last 64 KiB, last line included', async () => {
  const tp = await freshPool(server);
  const command = "yes 'LOFAR visibility record 0123456789' | head -c 200000000; echo 'the very last line'; echo 'err tail' >&2";
  const [t] = await addTokens(tp.pool, [{ obsid: 'L305', step: 'cal', subbands: [1], command }]);
  const a = agent(tp, ['--idle-exit', '2', '--poll', '1', '--workdir', path.join(dir, 'huge')]);
  assert.equal((await exitsWithin(a, 120_000, 'after 200 MB of output')).code, 0, a.logs().slice(-2000));
  const stored = (await tp.pool.db.get(t!._id)) as Token;
  assert.equal(stored.status, 'done', stored.reason ?? '');
  const out = (await tp.pool.db.attachment.get(t!._id, 'logs_1.out')).toString();
  assert.equal(out.length, 64 * 1024);
  assert.ok(out.endsWith('LOFAR visibility record 0the very last line\n'), JSON.stringify(out.slice(-120)));
  // 200,000,000 bytes of 35-byte lines end mid-line: the tail holds exactly what the step wrote.
  const line = 'LOFAR visibility record 0123456789\n';
  const last = 'the very last line\n';
  const from = 200_000_000 - (64 * 1024 - last.length);
  const expected = Array.from({ length: 200_000_000 - from }, (_, i) => line[(from + i) % line.length]).join('') + last;
  assert.equal(out, expected);
  assert.equal((await tp.pool.db.attachment.get(t!._id, 'logs_1.err')).toString(), 'err tail\n');
});
