/**
 * PiCaS interoperability, "our tools on PiCaS's tokens", against a real embedded server: tokens
 * written the way picasclient and GRID_LRT write them (raw documents, non-admin accounts) go into
 * a pool, PiCaS's Monitor views count them, `tokens adopt` upgrades them in place, and a real
 * `tokenpool agent` then processes them.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { startTestServer, type TestServer } from './helpers/server.js';
import { freshPool, killAgent, startAgent, tempDir, type AgentProcess, type TestPool } from './helpers/agent.js';
import { addPilotAccount, type PilotAccount } from './helpers/pilot.js';
import { runCli } from './helpers/cli.js';
import { openPool, type Pool } from '../server/client.js';
import { MONITOR_DDOC } from '../server/design.js';
import { isPicasToken, newToken, nowSeconds, PicasTokenSchema, validateToken, type Token } from '../server/token.js';
import { validateDocUpdate } from '../server/security.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

before(async () => {
  server = await startTestServer();
  dir = tempDir('picas');
});

after(async () => {
  for (const a of agents) killAgent(a);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

type Doc = Record<string, unknown> & { _id: string; _rev?: string };

/** A document as picasclient's push_tokens example makes it: Task's base fields, type "token", one input line. */
function picasclientToken(i: number, input: string, fields: Record<string, unknown> = {}): Doc {
  return { _id: `token_${i}`, type: 'token', lock: 0, done: 0, hostname: '', scrub_count: 0, input, output: {}, uploads: {}, error: [], ...fields };
}

async function overview(pool: Pool): Promise<Record<string, number>> {
  const res = await pool.db.view(MONITOR_DDOC, 'overview_total', { group: true });
  return Object.fromEntries(res.rows.map((r) => [r.key as string, r.value as number]));
}

async function revs(pool: Pool): Promise<Record<string, string>> {
  const res = await pool.db.list();
  return Object.fromEntries(res.rows.filter((r) => !r.id.startsWith('_design/')).map((r) => [r.id, r.value.rev]));
}

interface PicasPool {
  tp: TestPool;
  agent: PilotAccount;
  manager: PilotAccount;
  asAgent: Pool;
}

/** A pool holding a PiCaS user's work: picasclient tokens in every PiCaS state and a GRID_LRT token with its srm.txt. */
async function picasPool(): Promise<PicasPool> {
  const tp = await freshPool(server);
  const agent = await addPilotAccount(tp, dir, 'agent');
  const manager = await addPilotAccount(tp, dir, 'manager');
  const asAgent = openPool({ credentials: agent.file });
  const asManager = openPool({ credentials: manager.file });
  const t = nowSeconds() - 600;

  const written = await asAgent.db.bulk({
    docs: [
      picasclientToken(0, "echo 'this is token A'"),
      picasclientToken(1, "echo 'this is token B'"),
      picasclientToken(2, "echo 'this is token C'", { lock: t, done: t + 5, hostname: 'wn1', exit_code: 0, output: 'this is token C', slurm_job_id: '1200_3' }),
      picasclientToken(3, 'false', { lock: t, done: t + 5, hostname: 'wn2', exit_code: 3, error: [{ time: t + 5, message: 'payload failed' }] }),
      picasclientToken(4, "echo 'this is token E'", { lock: t, hostname: 'wn9' }),
      // picasclient's Task.error(): lock = done = -1, an entry with the exception text
      picasclientToken(5, 'crash', { lock: -1, done: -1, error: [{ time: t, message: 'pilot crashed', exception: 'Traceback …' }] }),
    ] as never[],
  });
  for (const r of written as { id: string; ok?: boolean; error?: string; reason?: string }[]) assert.ok(r.ok, `${r.id}: ${r.error} ${r.reason}`);

  // GRID_LRT: OBSID/PIPELINE_STEP/STARTSB, its own status and times, output "", the SURLs attached as srm.txt.
  const src = path.join(dir, 'src');
  const urls: string[] = [];
  for (const sb of ['000', '001']) {
    const ms = `L229507_SB${sb}_uv.MS`;
    fs.mkdirSync(path.join(src, ms), { recursive: true });
    fs.writeFileSync(path.join(src, ms, 'table.f0'), `subband ${sb}\n`);
    const file = path.join(dir, `${ms}_0a1b2c3d.tar`);
    await tar.c({ file, cwd: src }, [ms]);
    urls.push(pathToFileURL(file).href);
  }
  const grid = await asManager.db.insert({
    _id: 't_pref_cal1_L229507_SB000', type: 'token', lock: 0, done: 0, hostname: '', scrub_count: 0, output: '',
    OBSID: 'L229507', PIPELINE_STEP: 'pref_cal1', STARTSB: '000', status: 'queued', times: { queued: t },
  } as never);
  await asManager.db.attachment.insert('t_pref_cal1_L229507_SB000', 'srm.txt', Buffer.from(urls.join('\n') + '\n'), 'text/plain', { rev: grid.rev });
  return { tp, agent, manager, asAgent };
}

test('PiCaS-format tokens from picasclient and GRID_LRT are accepted and counted by the Monitor views; malformed ones are refused', async () => {
  const { tp, asAgent } = await picasPool();
  assert.deepEqual(await overview(tp.pool), { todo: 3, locked: 1, done: 1, error: 1 }, 'token_5 (lock -1) is in no PiCaS state, as in PiCaS');
  const todo = await tp.pool.db.view(MONITOR_DDOC, 'todo', {});
  assert.deepEqual(todo.rows.map((r) => r.id).sort(), ['t_pref_cal1_L229507_SB000', 'token_0', 'token_1']);

  // A PiCaS pilot's claim and finish (read, change, write with _rev) work as the agent role.
  const doc = (await asAgent.db.get('token_1')) as unknown as Doc;
  const locked = await asAgent.db.insert({ ...doc, lock: nowSeconds(), hostname: 'wn3' } as never);
  const back = await asAgent.db.insert({ ...doc, _rev: locked.rev, lock: 0, hostname: '' } as never);
  assert.ok(back.ok);

  const refused = async (d: Doc, re: RegExp) =>
    assert.rejects(asAgent.db.insert(d as never), (e: { statusCode: number; reason: string }) => e.statusCode === 403 && re.test(e.reason), JSON.stringify(d));
  await refused(picasclientToken(10, 'x', { lock: 'abc' }), /^invalid token token_10: lock must be 0, a Unix time or -1/);
  await refused(picasclientToken(11, 'x', { done: 1.5 }), /^invalid token token_11: done /);
  await refused(picasclientToken(12, 'x', { scrub_count: -1 }), /^invalid token token_12: scrub_count /);
  await refused(picasclientToken(13, 'x', { exit_code: 'failed' }), /^invalid token token_13: exit_code /);
  await refused(picasclientToken(14, 'x', { error: 'oops' }), /^invalid token token_14: error must be a list/);
  await refused(picasclientToken(15, 'x', { hostname: 7 }), /^invalid token token_15: hostname /);
  await refused({ _id: 'token_16', type: 'token', done: 0 }, /^invalid token token_16: lock /);
  assert.ok((await asAgent.db.insert(picasclientToken(17, 'x', { exit_code: '' }) as never)).ok, 'exit_code "" as PiCaS examples leave it');

  // A tokenpool token stays one: dropping its own fields is refused, not taken for PiCaS format.
  const ours = newToken({ obsid: 'L229507', step: 'cal1', subbands: [5] });
  const put = await asAgent.db.insert(ours);
  const { obsid: _o, step: _s, subbands: _b, attempts: _a, max_attempts: _m, lease: _l, history: _h, ...stripped } = ours;
  await refused({ ...stripped, _rev: put.rev }, /^invalid token L229507_cal1_SB005: status |obsid /);
  assert.ok(isPicasToken(stripped) && !isPicasToken(ours));
});

test('tokens adopt: a token lacking what adopt needs stops the run naming token and field, nothing changed', async () => {
  const { tp, agent } = await picasPool();
  const before = await revs(tp.pool);
  const r = await runCli(['tokens', 'adopt', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /token_0: obsid missing: the token has no OBSID field/);
  assert.match(r.stderr, /nothing was changed/);
  assert.match(r.stderr, /--obsid/);
  assert.doesNotMatch(r.stderr, /t_pref_cal1_L229507_SB000:/, 'the GRID_LRT token has what it needs');
  assert.deepEqual(await revs(tp.pool), before);

  const bad = await runCli(['tokens', 'adopt', '--db', tp.dbUrl, '--credentials', agent.file, '--obsid', '229507']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--obsid "229507" is not an observation id/);
  assert.deepEqual(await revs(tp.pool), before);
});

test('tokens adopt converts PiCaS tokens in place (PiCaS fields kept), then a real agent processes them to done', async () => {
  const { tp, agent } = await picasPool();
  const step = path.join(dir, 'step.mjs');
  // Like picasclient's process_task.sh: run the token's PiCaS input line; list the staged inputs.
  fs.writeFileSync(
    step,
    [
      "import fs from 'node:fs';",
      "import { execSync } from 'node:child_process';",
      'const t = JSON.parse(fs.readFileSync(process.env.TOKEN_FILE, "utf8"));',
      'console.log(`${process.env.TOKEN_ID} ${process.env.OBSID} ${process.env.STEP} inputs: ${fs.readdirSync(process.env.INPUT_DIR).sort().join(",")}`);',
      'if (typeof t.picas?.input === "string") execSync(t.picas.input, { stdio: "inherit", shell: "/bin/sh" });',
    ].join('\n'),
  );
  const command = `"${process.execPath}" "${step}"`;
  const base = ['tokens', 'adopt', '--db', tp.dbUrl, '--credentials', agent.file, '--obsid', 'L100', '--step', 'picas', '--command', command, '--json'];
  const before = await revs(tp.pool);

  const dry = await runCli([...base, '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout);
  assert.equal(plan.dry_run, true);
  assert.deepEqual(await revs(tp.pool), before, 'a dry run writes nothing');
  assert.deepEqual(
    Object.fromEntries(plan.adopted.map((a: { id: string; status: string }) => [a.id, a.status])),
    { 't_pref_cal1_L229507_SB000': 'todo', token_0: 'todo', token_1: 'todo', token_2: 'done', token_3: 'error', token_5: 'error' },
  );
  assert.equal(plan.skipped.length, 1);
  assert.equal(plan.skipped[0].id, 'token_4');
  assert.match(plan.skipped[0].reason, /locked by wn9 .*--include-locked/);

  const run = await runCli(base);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout);
  assert.equal(report.adopted.length, 6);
  assert.deepEqual(report.conflicts, []);

  const get = async (id: string) => (await tp.pool.db.get(id)) as unknown as Token & Doc;
  for (const a of report.adopted) {
    const v = validateToken(await get(a.id));
    assert.ok(v.ok, `${a.id}: ${JSON.stringify(!v.ok && v.problems)}`);
  }
  const t0 = await get('token_0');
  assert.equal(t0.status, 'todo');
  assert.equal(t0.obsid, 'L100');
  assert.equal(t0.step, 'picas');
  assert.equal(t0.command, command);
  assert.deepEqual(t0.input, []);
  assert.deepEqual(t0.picas, { input: "echo 'this is token A'", output: {} }, 'the PiCaS values adopt replaced are kept');
  assert.deepEqual(t0.uploads, {}, 'PiCaS fields kept');

  const grid = await get('t_pref_cal1_L229507_SB000');
  assert.equal(grid.obsid, 'L229507');
  assert.equal(grid.step, 'pref_cal1');
  assert.deepEqual(grid.subbands, [0, 1]);
  assert.equal(grid.input.length, 2);
  assert.match(grid.input[0]!.url, /^file:.*L229507_SB000_uv\.MS_0a1b2c3d\.tar$/);
  assert.equal(grid.status, 'todo');
  assert.equal(grid.OBSID, 'L229507');
  assert.equal(grid.STARTSB, '000');
  assert.deepEqual((grid.picas as Doc).status, 'queued');
  assert.ok((grid._attachments as Doc)['srm.txt'], 'attachments kept');

  const t2 = await get('token_2');
  assert.equal(t2.status, 'done');
  assert.equal(t2.exit_code, 0);
  assert.equal(t2.hostname, 'wn1');
  assert.equal(t2.slurm_job_id, '1200_3');
  const t3 = await get('token_3');
  assert.equal(t3.status, 'error');
  assert.equal(t3.exit_code, 3);
  assert.match(t3.reason!, /payload failed/);
  const t5 = await get('token_5');
  assert.equal(t5.status, 'error');
  assert.ok(t5.lock > 0 && t5.done > 0);
  assert.deepEqual((t5.picas as Doc).lock, -1);
  assert.equal((t5.error[0] as Record<string, unknown>).exception, 'Traceback …');
  const t4 = await get('token_4');
  assert.equal(t4._rev, before.token_4, 'the locked token is left alone');

  assert.deepEqual(await overview(tp.pool), { todo: 3, locked: 1, done: 1, error: 2 }, 'PiCaS views read adopted tokens alike');
  const status = await runCli(['status', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /L100 +picas/);
  assert.match(status.stdout, /1 PiCaS-format token not adopted .*tokenpool tokens adopt/);
  assert.doesNotMatch(status.stdout, /null/);

  const a = startAgent({ ...tp, credentials: agent.file }, ['--idle-exit', '2', '--poll', '1', '--workdir', path.join(dir, 'agent')]);
  agents.push(a);
  assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  for (const id of ['token_0', 'token_1', 't_pref_cal1_L229507_SB000']) {
    const t = await get(id);
    assert.equal(t.status, 'done', `${id}: ${t.reason}`);
    assert.equal(t.exit_code, 0);
  }
  const out0 = (await tp.pool.db.attachment.get('token_0', 'logs_1.out')).toString();
  assert.match(out0, /this is token A/);
  const outGrid = (await tp.pool.db.attachment.get('t_pref_cal1_L229507_SB000', 'logs_1.out')).toString();
  assert.match(outGrid, /L229507 pref_cal1 inputs: L229507_SB000_uv\.MS,L229507_SB001_uv\.MS/);
  assert.deepEqual(await overview(tp.pool), { locked: 1, done: 4, error: 2 });
  assert.equal((await get('token_4'))._rev, before.token_4);

  // Again: nothing left but the locked token, which --include-locked takes over.
  const again = JSON.parse((await runCli(base)).stdout);
  assert.equal(again.adopted.length, 0);
  const takeover = JSON.parse((await runCli([...base, '--include-locked'])).stdout);
  assert.deepEqual(takeover.adopted, [{ id: 'token_4', status: 'todo', from: 'locked' }]);
  const t4b = await get('token_4');
  assert.equal(t4b.lock, 0);
  assert.equal(t4b.scrub_count, 1);
  assert.equal(t4b.hostname, '');
});

test('the validate function and PicasTokenSchema agree on PiCaS-format tokens', () => {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const validate = new Function(`return (${validateDocUpdate});`)() as (n: unknown, o: unknown, u: unknown) => void;
  const verdict = (d: unknown): string | null => {
    try {
      validate(d, null, { name: 'a', roles: ['tokenpool_agent'] });
      return null;
    } catch (e) {
      return (e as { forbidden: string }).forbidden;
    }
  };
  const good: Doc[] = [
    picasclientToken(1, 'x'),
    picasclientToken(2, 'x', { lock: -1, done: -1, error: [{ time: 1 }] }),
    picasclientToken(3, 'x', { exit_code: '' }),
    picasclientToken(4, 'x', { exit_code: '-2' }),
    picasclientToken(5, 'x', { exit_code: null, status: 'queued', times: { queued: 1 } }),
    { _id: 'bare', type: 'token', lock: 0, done: 0 },
  ];
  for (const d of good) {
    assert.ok(isPicasToken(d));
    assert.equal(verdict(d), null, d._id);
    assert.ok(PicasTokenSchema.safeParse(d).success, d._id);
  }
  const bad: [string, Record<string, unknown>][] = [
    ['lock', { lock: 'abc' }],
    ['lock', { lock: -2 }],
    ['done', { done: null }],
    ['hostname', { hostname: [] }],
    ['scrub_count', { scrub_count: 0.5 }],
    ['exit_code', { exit_code: 'x1' }],
    ['exit_code', { exit_code: 1.5 }],
    ['error', { error: {} }],
    ['error.0', { error: ['text'] }],
  ];
  for (const [field, change] of bad) {
    const d = picasclientToken(9, 'x', change);
    const parsed = PicasTokenSchema.safeParse(d);
    assert.ok(!parsed.success, `${field}: PicasTokenSchema refuses it`);
    assert.equal(parsed.error.issues[0]!.path.join('.'), field);
    assert.ok(verdict(d)?.startsWith(`invalid token token_9: ${field} `), `${field}: ${verdict(d)}`);
  }
});
