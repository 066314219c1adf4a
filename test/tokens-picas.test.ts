/**
 * PiCaS interoperability, "our tools on PiCaS's tokens", against a real embedded server: tokens
 * written the way picasclient and GRID_LRT write them (raw documents, non-admin accounts) go into
 * a pool, PiCaS's Monitor views count them, `tokens adopt` upgrades them in place, and a real
 * `tokenpool agent` then processes them.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { allCopies, BACKEND, startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, eventually, freshPool, killAgent, startAgent, tempDir, type AgentProcess, type TestPool } from './helpers/agent.js';
import { picasAccount, runPicas } from './helpers/picas.js';
import { addPilotAccount, type PilotAccount } from './helpers/pilot.js';
import { runCli } from './helpers/cli.js';
import { openPool, type Pool } from '../server/client.js';
import { MONITOR_DDOC } from '../server/design.js';
import { inputFilesOf, isPicasToken, newToken, nowSeconds, PicasTokenSchema, validateToken, type NewToken, type Token } from '../server/token.js';
import { EFFECTIVE_STATUS_JS, effectiveStatus, failureReason, lastChange } from '../server/effective-status.js';
import { validateDocUpdate } from '../server/security.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('picas');
});

afterAll(async () => {
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
  // The pool's starting contents are on every copy before the product reads them (picasclient itself writes at CouchDB's defaults later).
  const asAgent = allCopies(openPool({ credentials: agent.file }), server.nodes.length);
  const asManager = allCopies(openPool({ credentials: manager.file }), server.nodes.length);
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
  await eventually(async () => assert.deepEqual(await overview(tp.pool), { todo: 3, locked: 1, done: 1, error: 1 }, 'token_5 (lock -1) is in no PiCaS state, as in PiCaS'));
  const todo = await tp.pool.db.view(MONITOR_DDOC, 'todo', {});
  assert.deepEqual(todo.rows.map((r) => r.id).sort(), ['t_pref_cal1_L229507_SB000', 'token_0', 'token_1']);

  // A PiCaS pilot's claim and finish (read, change, write with _rev) work as the agent role.
  const doc = (await asAgent.db.get('token_1')) as unknown as Doc;
  const locked = await asAgent.db.insert({ ...doc, lock: nowSeconds(), hostname: 'wn3' } as never);
  const back = await asAgent.db.insert({ ...doc, _rev: locked.rev, lock: 0, hostname: '' } as never);
  assert.ok(back.ok);

  const refused = async (d: Doc, re: RegExp) =>
    assert.rejects(asAgent.db.insert(d as never), (e: { statusCode: number; reason: string }) => e.statusCode === 403 && re.test(e.reason), JSON.stringify(d));
  await refused(picasclientToken(10, 'x', { lock: 'abc' }), /^invalid token token_10: lock must be 0, a Unix time, 99 or -1/);
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
  assert.match(r.stderr, /token_0: step missing: the token has no PIPELINE_STEP field/);
  assert.doesNotMatch(r.stderr, /obsid missing/, 'a token naming no observation needs none invented');
  assert.match(r.stderr, /nothing was changed/);
  assert.match(r.stderr, /--step/);
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
      'if (process.env.TOKEN_INPUT) execSync(process.env.TOKEN_INPUT, { stdio: "inherit", shell: "/bin/sh" });',
      'if (process.env.TOKEN_INPUT !== (typeof t.input === "string" ? t.input : "")) process.exit(9);',
    ].join('\n'),
  );
  const command = `"${process.execPath}" "${step}"`;
  const base = ['tokens', 'adopt', '--db', tp.dbUrl, '--credentials', agent.file, '--step', 'picas', '--command', command, '--json'];
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
  assert.equal(t0.obsid, null, 'no observation invented');
  assert.equal(t0.step, 'picas');
  assert.equal(t0.command, command);
  assert.equal(t0.input, "echo 'this is token A'", 'the input line stays where PiCaS scripts read it');
  assert.deepEqual(t0.picas, { output: {} }, 'the PiCaS values adopt replaced are kept');
  assert.deepEqual(t0.uploads, {}, 'PiCaS fields kept');

  const grid = await get('t_pref_cal1_L229507_SB000');
  assert.equal(grid.obsid, 'L229507');
  assert.equal(grid.step, 'pref_cal1');
  assert.deepEqual(grid.subbands, [0, 1]);
  assert.equal(grid.input.length, 2);
  assert.match(inputFilesOf(grid)[0]!.url, /^file:.*L229507_SB000_uv\.MS_0a1b2c3d\.tar$/);
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

  await eventually(async () => assert.deepEqual(await overview(tp.pool), { todo: 3, locked: 1, done: 1, error: 2 }, 'PiCaS views read adopted tokens alike'));
  const status = await runCli(['status', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^ *- +picas /m);
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
  await eventually(async () => assert.deepEqual(await overview(tp.pool), { locked: 1, done: 4, error: 2 }));
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

test('effective status: the views and the commands apply the same rule to PiCaS workers\' tokens', () => {
  // The views' ES5 copy of the rule, run as CouchDB would run it.
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const js = new Function(`${EFFECTIVE_STATUS_JS}; return { effectiveStatus: effectiveStatus, failureReason: failureReason, lastChange: lastChange };`)() as {
    effectiveStatus: (d: unknown) => string;
    failureReason: (d: unknown) => string;
    lastChange: (d: unknown) => number;
  };
  const ours = (fields: Record<string, unknown>) => ({ ...newToken({ obsid: 'L1', step: 's', subbands: [1] }, 1000), ...fields });
  const cases: [Record<string, unknown>, string][] = [
    [ours({}), 'todo'],
    [ours({ status: 'staging' }), 'staging'],
    [ours({ lock: 2000, hostname: 'wn1' }), 'locked'],
    [ours({ lock: 2000, done: 2100, exit_code: 0 }), 'done'],
    [ours({ lock: 2000, done: 2100, exit_code: 3 }), 'error'],
    [ours({ lock: 99, done: 99 }), 'error'],
    [ours({ status: 'running', lock: 2000, lease: { owner: 'a', claim_id: 'c', expires: 3000, heartbeat: 2000 } }), 'running'],
    [ours({ status: 'error', lock: 2000, done: 2100, exit_code: 0, reason: 'uploadFailed' }), 'error'],
    [picasclientToken(1, 'x'), 'todo'],
    [picasclientToken(1, 'x', { lock: 2000 }), 'locked'],
    [picasclientToken(1, 'x', { lock: 2000, done: 2100, exit_code: 0 }), 'done'],
    [picasclientToken(1, 'x', { lock: 2000, done: 2100, exit_code: '1' }), 'error'],
    [picasclientToken(1, 'x', { lock: 99, done: 99, exit_code: 0 }), 'error'],
    [picasclientToken(1, 'x', { lock: -1, done: -1 }), 'error'],
    [picasclientToken(1, 'x', { lock: 2000, done: 2100, exit_code: '', status: 'done' }), 'done'],
  ];
  for (const [doc, want] of cases) {
    assert.equal(effectiveStatus(doc), want, JSON.stringify(doc));
    assert.equal(js.effectiveStatus(doc), want, `view: ${JSON.stringify(doc)}`);
    assert.equal(js.failureReason(doc), failureReason(doc));
    assert.equal(js.lastChange(doc), lastChange(doc));
  }
  assert.equal(lastChange(ours({ lock: 2000, done: 2100, exit_code: 0 })), 2100, 'a PiCaS worker\'s end counts as the last change');
});

/** tokenpool-made tokens whose command records each run in `runs`. */
function runTracked(runs: string, obsid: string, n: number, opts: { fail?: (i: number) => boolean; status?: (i: number) => 'todo' | 'staging' | 'waiting' } = {}): NewToken[] {
  return Array.from({ length: n }, (_, i) => {
    const id = `${obsid}_cal1_SB${String(i).padStart(3, '0')}`;
    const fail = opts.fail?.(i) ?? false;
    return {
      obsid,
      step: 'cal1',
      subbands: [i],
      command: `echo ${id} >> ${runs}; echo running ${id}; ${fail ? 'echo broken >&2; exit 4' : 'true'}`,
      status: opts.status?.(i) ?? 'todo',
      ...(fail ? { max_attempts: 1 } : {}),
    };
  });
}

async function statusJson(tp: TestPool, credentials: string) {
  const r = await runCli(['status', '--json', '--db', tp.dbUrl, '--credentials', credentials]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { totals: { counts: Record<string, number> }; picasCounts: Record<string, number>; picasTokens: number };
}

async function failuresJson(tp: TestPool, credentials: string) {
  const r = await runCli(['failures', '--json', '--db', tp.dbUrl, '--credentials', credentials]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as { groups: { obsid: string; step: string; reason: string; exitCode: number | null; count: number; examples: string[]; log: { name: string; lines: string[] } | null }[] };
}

test('stock picasclient workers on tokenpool tokens: never take staging/waiting ones; their work and failures (exit code, 99) show in status, failures, tokens show and list', async () => {
  const tp = await freshPool(server);
  const agent = await addPilotAccount(tp, dir, 'agent');
  const work = tempDir('picas-a');
  const runs = path.join(work, 'runs.log');
  const specs = runTracked(runs, 'L300', 8, { fail: (i) => i === 2, status: (i) => (i === 6 ? 'staging' : i === 7 ? 'waiting' : 'todo') });
  // No command at all: picasclient's process_task raises, and RunActor marks the task lock = done = 99.
  specs.push({ obsid: 'L300', step: 'cal1', subbands: [8] });
  await addTokens(tp.pool, specs);

  const todo = await tp.pool.db.view(MONITOR_DDOC, 'todo', {});
  assert.deepEqual(todo.rows.map((r) => r.id).sort(), ['L300_cal1_SB000', 'L300_cal1_SB001', 'L300_cal1_SB002', 'L300_cal1_SB003', 'L300_cal1_SB004', 'L300_cal1_SB005', 'L300_cal1_SB008']);

  const w = await runPicas(work, 'worker', picasAccount(tp.dbUrl, agent.name, agent.password));
  assert.equal(w.code, 0, w.stderr.slice(-3000));
  assert.match(w.stdout, /processed 7/);
  assert.deepEqual(fs.readFileSync(runs, 'utf8').trim().split('\n').sort(), ['L300_cal1_SB000', 'L300_cal1_SB001', 'L300_cal1_SB002', 'L300_cal1_SB003', 'L300_cal1_SB004', 'L300_cal1_SB005']);
  for (const id of ['L300_cal1_SB006', 'L300_cal1_SB007']) {
    const t = (await tp.pool.db.get(id)) as Token;
    assert.equal(t.lock, 0, `${id} (${t.status}) was not taken by the PiCaS worker`);
  }
  const failed99 = (await tp.pool.db.get('L300_cal1_SB008')) as Token;
  assert.equal(failed99.lock, 99, 'picasclient marks a failed task with 99');

  // Everything read through views, retried as a whole: a lagging copy may answer any one of the reads.
  await eventually(async () => {
    const s = await statusJson(tp, agent.file);
    assert.deepEqual(s.totals.counts, { done: 5, error: 2, staging: 1, waiting: 1 });
    assert.deepEqual(await overview(tp.pool), { done: 5, error: 2 }, 'the Monitor views agree');
    const text = await runCli(['status', '--db', tp.dbUrl, '--credentials', agent.file]);
    assert.match(text.stdout, /L300 +cal1 .* 5\/9 /);

    const f = await failuresJson(tp, agent.file);
    const byExit = Object.fromEntries(f.groups.map((g) => [String(g.exitCode), g]));
    assert.equal(byExit['4']!.reason, 'failed in a PiCaS worker');
    assert.deepEqual(byExit['4']!.examples, ['L300_cal1_SB002']);
    assert.equal(byExit['4']!.log?.name, 'logs_L300_cal1_SB002.err', 'the PiCaS worker\'s log');
    assert.deepEqual(byExit['4']!.log?.lines, ['broken']);
    assert.deepEqual(byExit['null']!.examples, ['L300_cal1_SB008']);

    const list = await runCli(['tokens', 'list', '--status', 'error', '--json', '--db', tp.dbUrl, '--credentials', agent.file]);
    assert.deepEqual((JSON.parse(list.stdout) as Token[]).map((t) => t._id).sort(), ['L300_cal1_SB002', 'L300_cal1_SB008']);
  }, 60_000);

  const show = await runCli(['tokens', 'show', 'L300_cal1_SB000', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /status +done \(set by a PiCaS worker; status field: todo\)/);
  assert.match(show.stdout, /logs_L300_cal1_SB000\.out/);

  // tokens reset takes them back from PiCaS's state, for either kind of worker.
  const reset = await runCli(['tokens', 'reset', '--status', 'error', '--obsid', 'L300', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(reset.code, 0, reset.stderr);
  const again = (await tp.pool.db.get('L300_cal1_SB002')) as Token;
  assert.deepEqual([again.status, again.lock, again.done, again.reason], ['todo', 0, 0, 'reset from error']);
});

test('an agent pointed at PiCaS tokens (--view Monitor/todo) leaves them alone and says once to adopt them; adopt reads 99 as the error mark', async () => {
  const tp = await freshPool(server);
  const agent = await addPilotAccount(tp, dir, 'agent');
  const work = tempDir('picas-b');
  const push = await runPicas(work, 'push', picasAccount(tp.dbUrl, agent.name, agent.password), ['0'], JSON.stringify(Array.from({ length: 12 }, (_, i) => `echo 'this is token ${i}'`)));
  assert.equal(push.code, 0, push.stderr);
  assert.deepEqual(JSON.parse(push.stdout), Array(12).fill(true));
  const before = await revs(tp.pool);

  const a = startAgent({ ...tp, credentials: agent.file }, ['--view', 'Monitor/todo', '--idle-exit', '2', '--poll', '1', '--workdir', path.join(work, 'agent')]);
  agents.push(a);
  assert.equal((await a.exited).code, 0, a.logs().slice(-3000));
  const logs = a.logs();
  assert.equal(logs.match(/PiCaS-format token/g)?.length, 1, logs.slice(-3000));
  assert.match(logs, /tokenpool tokens adopt/);
  assert.doesNotMatch(logs, /malformed token/);
  assert.ok(logs.length < 8000, `no schema dump per token: ${logs.length} bytes of log`);
  assert.deepEqual(await revs(tp.pool), before, 'the PiCaS tokens are untouched');

  // picasclient's Task.error(): lock = done = 99. Adopted, that is an error at the error's time, not 1970.
  const doc = (await tp.pool.db.get('token_3')) as unknown as Doc;
  const t = nowSeconds() - 60;
  await tp.pool.db.insert({ ...doc, lock: 99, done: 99, error: [{ time: t, message: 'Exception occurred during processing' }] } as never);
  const r = await runCli(['tokens', 'adopt', '--step', 'echo', '--command', './process_task.sh "$TOKEN_INPUT" "$TOKEN_ID"', '--json', '--db', tp.dbUrl, '--credentials', agent.file]);
  assert.equal(r.code, 0, r.stderr);
  const adopted = (await tp.pool.db.get('token_3')) as Token;
  assert.deepEqual([adopted.status, adopted.lock, adopted.done, adopted.obsid], ['error', t, t, null]);
  assert.equal(((await tp.pool.db.get('token_4')) as Token).input, "echo 'this is token 4'");
});

test('a mixed fleet: 3 stock picasclient workers and 3 tokenpool agents on one pool of 120 tokens, each run once, status, failures and Monitor agree', async () => {
  const tp = await freshPool(server);
  const agent = await addPilotAccount(tp, dir, 'agent');
  const work = tempDir('picas-mixed');
  const runs = path.join(work, 'runs.log');
  const account = picasAccount(tp.dbUrl, agent.name, agent.password);
  // 80 made by tokenpool (every 10th fails), 40 by picasclient's own token script (every 8th fails).
  await addTokens(tp.pool, runTracked(runs, 'L400', 80, { fail: (i) => i % 10 === 3 }));
  const lines = Array.from({ length: 40 }, (_, i) => `echo token_${i} >> ${runs}; echo picas token ${i}; ${i % 8 === 5 ? 'echo broken >&2; exit 5' : 'true'}`);
  const push = await runPicas(work, 'push', account, ['0'], JSON.stringify(lines));
  assert.deepEqual(JSON.parse(push.stdout), Array(40).fill(true), push.stderr);

  const started = [0, 1, 2].map((i) => startAgent({ ...tp, credentials: agent.file }, ['--idle-exit', '3', '--poll', '1', '--workdir', path.join(work, `agent${i}`)]));
  agents.push(...started);
  const workers = await Promise.all([0, 1, 2].map(() => runPicas(work, 'worker', account)));
  const exits = await Promise.all(started.map((a) => a.exited));
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, started[i]!.logs().slice(-3000));
  // picasclient stops on a refused write: the guard refuses it the lock of a token an agent holds, or one already taken.
  for (const w of workers) assert.ok(w.code === 0 || /a tokenpool agent holds the token|the token is taken already/.test(w.stderr), w.stderr.slice(-3000));
  const picasRan = workers.reduce((n, w) => n + Number(/processed (\d+)/.exec(w.stdout)?.[1] ?? 0), 0);
  assert.ok(picasRan > 0, 'the PiCaS workers took part');

  const ran = fs.readFileSync(runs, 'utf8').trim().split('\n');
  const counts = new Map<string, number>();
  for (const id of ran) counts.set(id, (counts.get(id) ?? 0) + 1);
  assert.equal(counts.size, 120, 'every token ran');
  // picasclient locks what it fetched without checking lock again, so two stock workers can run one
  // PiCaS token twice (its README); and on a cluster nothing fences a PiCaS worker's claim against an
  // agent's (docs/tokens.md, "Coming from PiCaS"). Where the pool can decide, each runs once.
  const twice = [...counts].filter(([id, n]) => n !== 1 && id.startsWith('L400_'));
  if (BACKEND !== 'cluster') assert.deepEqual(twice, [], 'tokenpool tokens ran once each');

  const failedOurs = 8;
  const failedPicas = 5;
  await eventually(async () => {
    const s = await statusJson(tp, agent.file);
    assert.deepEqual(s.totals.counts, { done: 80 - failedOurs, error: failedOurs });
    assert.deepEqual(s.picasCounts, { done: 40 - failedPicas, error: failedPicas });
    assert.deepEqual(await overview(tp.pool), { done: 120 - failedOurs - failedPicas, error: failedOurs + failedPicas }, 'Monitor agrees');

    const f = await failuresJson(tp, agent.file);
    assert.equal(f.groups.reduce((n, g) => n + g.count, 0), failedOurs + failedPicas);
    const picasGroup = f.groups.find((g) => g.exitCode === 5)!;
    assert.deepEqual([picasGroup.obsid, picasGroup.step, picasGroup.count], ['-', '-', failedPicas]);
    for (const g of f.groups) {
      assert.ok(g.log, `${g.reason}: a log`);
      assert.deepEqual(g.log.lines, ['broken'], `${g.reason}: ${g.log.name}`);
    }
  }, 60_000);
});
