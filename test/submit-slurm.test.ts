/**
 * Pilots on a real Slurm (one node, started by test/helpers/slurm.ts): a 3-pilot array drains 12
 * tokens, each done once and carrying its <array job>_<task> id; a pilot stopped by scancel, by a
 * signal to its batch shell, or by the walltime warning (--signal=B:TERM@grace) puts its token back.
 * No secret in the batch script Slurm stores or in ps.
 */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runCli } from './helpers/cli.js';
import { addTokens, allTokens, type TestPool } from './helpers/agent.js';
import { allCommandLines, type PilotAccount } from './helpers/pilot.js';
import { waitFor } from './helpers/slurm.js';
import { slurmSubmitFixture } from './helpers/slurm-submit.js';
import { isSubmission, pilotCounts, type Submission } from '../server/submissions.js';
import type { Token } from '../server/token.js';

const fx = slurmSubmitFixture('slurm');

async function submit(tp: TestPool, account: PilotAccount, extra: string[], agentArgs: string[] = []): Promise<Submission> {
  const res = await runCli([...fx.args(tp, account, extra), '--', '--jitter', '0', '--poll', '1', ...agentArgs], { env: fx.slurm.env });
  assert.equal(res.code, 0, res.stderr);
  return JSON.parse(res.stdout) as Submission;
}

async function token(tp: TestPool, id: string): Promise<Token> {
  return (await tp.pool.db.get(id)) as Token;
}

function jobGone(jobId: string): boolean {
  const out = fx.slurm.run('squeue', ['-h', '-r', '-t', 'PENDING,RUNNING,CONFIGURING,COMPLETING', '-o', '%i']);
  return !out.split('\n').some((l) => l === jobId || l.startsWith(`${jobId}_`));
}

function pilotLog(jobId: string, task: number, ext: 'out' | 'err'): string {
  const logs = path.join(fx.dir, 'logs');
  const file = fs.readdirSync(logs).find((f) => f.endsWith(`-${jobId}_${task}.${ext}`));
  return file ? fs.readFileSync(path.join(logs, file), 'utf8') : '';
}

test('--dry-run prints the sbatch script and submits nothing', async () => {
  const { tp, account } = await fx.pool();
  const res = await runCli(
    [...fx.args(tp, account, ['--count', '5', '--parallel', '2', '--time', '1-00:00:00', '--partition', 'debug', '--cpus', '2', '--mem', '2G', '--signal-grace', '300', '--dry-run']), '--', '--step', 'cal1'],
    { env: fx.slurm.env },
  );
  assert.equal(res.code, 0, res.stderr);
  const out = JSON.parse(res.stdout) as { stdin: string; command: string[] };
  assert.deepEqual(out.command, ['sbatch', '--parsable']);
  const script = out.stdin;
  for (const line of ['#SBATCH --array=0-4%2', '#SBATCH --time=1-00:00:00', '#SBATCH --partition=debug', '#SBATCH --cpus-per-task=2', '#SBATCH --mem=2G', '#SBATCH --signal=B:TERM@300']) {
    assert.ok(script.includes(line), `${line} in\n${script}`);
  }
  assert.match(script, /export TOKENPOOL_MAX_TIME=86100\n/, 'the agent stops claiming grace seconds before the time limit');
  assert.match(script, /exec \/bin\/sh \S+pilot\.sh --jitter 0 --poll 1 --step cal1|exec \/bin\/sh \S+pilot\.sh --step cal1/);
  assert.ok(!script.includes(account.password));
  assert.equal(fx.slurm.run('squeue', ['-h', '-o', '%i']).trim(), '', 'nothing was queued');
  assert.equal((await tp.pool.db.list()).rows.filter((r) => r.id.startsWith('submission')).length, 0);

  const bad = await runCli(fx.args(tp, account, ['--count', '2', '--time', 'soon', '--dry-run']), { env: fx.slurm.env });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--time soon is not a Slurm time limit/);
});

test('submit slurm --count 3 drains 12 tokens: each done once, each with its <array job>_<task> id', async () => {
  const { tp, account } = await fx.pool();
  const shared = path.join(fx.dir, 'runs.txt');
  await addTokens(
    tp.pool,
    Array.from({ length: 12 }, (_, i) => ({ obsid: 'L300', step: 'cal', subbands: [i], command: `sleep 1; echo "$TOKEN_ID $SLURM_ARRAY_JOB_ID" >> ${shared}` })),
  );
  const record = await submit(tp, account, ['--count', '3', '--time', '10', '--signal-grace', '60', '--idle-exit', '3']);
  assert.equal(record.backend, 'slurm');
  assert.equal(record.count, 3);
  const arrayJob = record.job_ids[0]!;
  assert.match(arrayJob, /^\d+$/);

  // Slurm keeps the script it runs: no secret in it. Neither in ps while pilots run.
  const stored = fx.slurm.run('scontrol', ['write', 'batch_script', arrayJob, '-']);
  assert.match(stored, /#SBATCH --array=0-2%3/);
  assert.ok(!stored.includes(account.password), 'no password in the stored batch script');
  await waitFor(async () => (await allTokens(tp.pool)).some((t) => t.status === 'running' || t.status === 'done'), { timeoutMs: 120_000, what: 'pilots to start' });
  const ps = allCommandLines();
  assert.ok(!ps.includes(account.password), 'no password in ps');

  await waitFor(async () => (await allTokens(tp.pool)).every((t) => t.status === 'done'), { timeoutMs: 150_000, what: 'all 12 tokens done' });
  await waitFor(() => jobGone(arrayJob), { timeoutMs: 90_000, what: 'the pilots to exit' });

  const lines = fs.readFileSync(shared, 'utf8').trim().split('\n');
  assert.equal(lines.length, 12, 'each token ran once');
  assert.equal(new Set(lines.map((l) => l.split(' ')[0])).size, 12);
  const tasks = new Set<string>();
  for (const t of await allTokens(tp.pool)) {
    assert.equal(t.status, 'done');
    assert.equal(t.history.length, 1, `${t._id} ran once`);
    assert.match(String(t.slurm_job_id), new RegExp(`^${arrayJob}_[0-2]$`), `${t._id}: slurm_job_id`);
    tasks.add(String(t.slurm_job_id));
  }
  assert.ok(tasks.size >= 1);
  for (let task = 0; task < 3; task++) assert.ok(!pilotLog(arrayJob, task, 'err').includes(account.password), 'no password in pilot logs');

  // The record tells status and `tokenpool pilots` that all three pilots finished.
  const counts = await pilotCounts(tp.pool, { env: fx.slurm.env });
  assert.deepEqual(counts, { queued: 0, running: 0, finished: 3, unknown: 0 });
  const listed = await runCli(['pilots', '--db', tp.dbUrl, '--credentials', tp.credentials, '--json'], { env: fx.slurm.env });
  assert.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as (Submission & { pilots: Record<string, number> })[];
  assert.equal(rows.length, 1);
  assert.equal(rows[0]!.job_ids[0], arrayJob);
  assert.deepEqual(rows[0]!.pilots, { queued: 0, running: 0, finished: 3, unknown: 0 });
  const text = await runCli(['pilots', '--db', tp.dbUrl, '--credentials', tp.credentials], { env: fx.slurm.env });
  assert.match(text.stdout, new RegExp(`slurm\\s+${arrayJob}\\s+3\\s+0\\s+0\\s+3`));
});

/** Submits one pilot on a long token and waits until the step runs; returns the array job id. */
async function runningPilot(tp: TestPool, account: PilotAccount, id: string, extra: string[], agentArgs: string[] = []): Promise<string> {
  const record = await submit(tp, account, ['--count', '1', '--idle-exit', '2', ...extra], agentArgs);
  const jobId = record.job_ids[0]!;
  await waitFor(async () => (await token(tp, id)).status === 'running', { timeoutMs: 120_000, what: `token ${id} to run` });
  return jobId;
}

async function assertPutBack(tp: TestPool, id: string, jobId: string): Promise<Token> {
  await waitFor(() => jobGone(jobId), { timeoutMs: 120_000, what: `pilot ${jobId} to end` });
  const t = await token(tp, id);
  assert.equal(t.status, 'todo', `token back to todo, is ${t.status} (${t.reason}); pilot log:\n${pilotLog(jobId, 0, 'err').slice(-3000)}`);
  assert.equal(t.lease, null);
  assert.equal(t.lock, 0);
  assert.equal(t.history.length, 1);
  assert.equal(t.history[0]!.batch_job_id, `${jobId}_0`);
  return t;
}

test('scancel of a running pilot puts its token back to todo', async () => {
  const { tp, account } = await fx.pool();
  const [t] = await addTokens(tp.pool, [{ obsid: 'L301', step: 'cal', subbands: [1], command: 'sleep 600' }]);
  const jobId = await runningPilot(tp, account, t!._id, ['--time', '30']);
  fx.slurm.run('scancel', [jobId]);
  await assertPutBack(tp, t!._id, jobId);
});

test('SIGTERM to the batch shell only (as --signal=B:TERM delivers it) is passed on by pilot.sh; the token goes back', async () => {
  const { tp, account } = await fx.pool();
  const [t] = await addTokens(tp.pool, [{ obsid: 'L302', step: 'cal', subbands: [1], command: 'sleep 600' }]);
  const jobId = await runningPilot(tp, account, t!._id, ['--time', '30']);
  fx.slurm.run('scancel', ['--batch', '--signal=TERM', `${jobId}_0`]);
  await assertPutBack(tp, t!._id, jobId);
  assert.match(pilotLog(jobId, 0, 'err'), /received TERM; asking the agent to stop/);
});

test('the walltime warning (--signal=B:TERM@grace) stops the pilot before Slurm kills it; the token goes back', async () => {
  const { tp, account } = await fx.pool();
  const [t] = await addTokens(tp.pool, [{ obsid: 'L303', step: 'cal', subbands: [1], command: 'sleep 600' }]);
  // A 4-minute job warned 150 s before its end: Slurm may send the warning up to 60 s early, so it
  // comes 30–90 s into the job, after the pilot has started its step. --max-time on the agent's
  // command line overrides the budget from the script so that only the signal can stop this step.
  const jobId = await runningPilot(tp, account, t!._id, ['--time', '4', '--signal-grace', '150'], ['--max-time', '100000']);
  await assertPutBack(tp, t!._id, jobId);
  assert.match(pilotLog(jobId, 0, 'err'), /received TERM; asking the agent to stop/);
  const stateLine = fx.slurm.run('squeue', ['-h', '-t', 'all', '-j', jobId, '-o', '%T']).trim();
  assert.notEqual(stateLine, 'TIMEOUT', 'the pilot ended before its time limit');
});

test('records: pilotCounts sees queued and running pilots of this pool through squeue', async () => {
  const { tp, account } = await fx.pool();
  await addTokens(tp.pool, [{ obsid: 'L304', step: 'cal', subbands: [1], command: 'sleep 600' }]);
  const held = await submit(tp, account, ['--count', '4', '--time', '10', '--sbatch-option=--hold']);
  const counts = await pilotCounts(tp.pool, { env: fx.slurm.env });
  assert.deepEqual(counts, { queued: 4, running: 0, finished: 0, unknown: 0 });
  fx.slurm.run('scancel', [held.job_ids[0]!]);
  await waitFor(() => jobGone(held.job_ids[0]!), { timeoutMs: 60_000, what: 'the held pilots to be cancelled' });
  assert.deepEqual(await pilotCounts(tp.pool, { env: fx.slurm.env }), { queued: 0, running: 0, finished: 4, unknown: 0 });
  const records = (await tp.pool.db.list({ include_docs: true })).rows.map((r) => r.doc as unknown).filter(isSubmission);
  assert.ok(records[0]!.finished_at, 'the record is marked finished once every pilot ended');
});
