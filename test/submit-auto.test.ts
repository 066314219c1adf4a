/**
 * The autopilot on a real Slurm: `submit slurm --auto` submits while claimable tokens remain and stops
 * when the pool is drained; `--once` rounds keep no state of their own (a restart sees the pilots it
 * queued before, through the submission records and squeue).
 */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { runCli } from './helpers/cli.js';
import { addTokens, allTokens, type TestPool } from './helpers/agent.js';
import type { PilotAccount } from './helpers/pilot.js';
import { waitFor } from './helpers/slurm.js';
import { slurmSubmitFixture } from './helpers/slurm-submit.js';
import { isSubmission, type Submission } from '../server/submissions.js';
import { pilotsToSubmit, type Round } from '../scripts/commands/submit-auto.js';

const fx = slurmSubmitFixture('auto');

function autoArgs(tp: TestPool, account: PilotAccount, extra: string[]): string[] {
  return [...fx.args(tp, account, ['--auto', '--time', '10', '--idle-exit', '3', ...extra]), '--', '--jitter', '0', '--poll', '1'];
}

function rounds(stdout: string): Round[] {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Round);
}

async function submissions(tp: TestPool): Promise<Submission[]> {
  return (await tp.pool.db.list({ include_docs: true })).rows.map((r) => r.doc as unknown).filter(isSubmission);
}

test('how many pilots a round submits', () => {
  assert.equal(pilotsToSubmit({ claimable: 12, active: 0 }, { queued: 0, running: 0 }, 5), 5, 'bounded by --max-queued');
  assert.equal(pilotsToSubmit({ claimable: 12, active: 3 }, { queued: 2, running: 3 }, 5), 3);
  assert.equal(pilotsToSubmit({ claimable: 2, active: 3 }, { queued: 0, running: 3 }, 5), 0, 'running pilots take the rest');
  assert.equal(pilotsToSubmit({ claimable: 4, active: 0 }, { queued: 4, running: 0 }, 10), 0, 'enough queued');
});

test('--auto submits while claimable tokens remain and stops when the pool is drained', async () => {
  const { tp, account } = await fx.pool();
  const shared = path.join(fx.dir, 'auto-runs.txt');
  await addTokens(
    tp.pool,
    Array.from({ length: 8 }, (_, i) => ({ obsid: 'L400', step: 'cal', subbands: [i], command: `sleep 2; echo "$TOKEN_ID" >> ${shared}` })),
  );
  const res = await runCli(autoArgs(tp, account, ['--max-queued', '2', '--interval', '2']), { env: fx.slurm.env, timeoutMs: 170_000 });
  assert.equal(res.code, 0, res.stderr);
  const log = rounds(res.stdout);
  const last = log[log.length - 1]!;
  assert.equal(last.drained, true, 'the last round found the pool drained');
  assert.ok(log.some((r) => r.submitted > 0), 'it submitted pilots');
  for (const r of log) assert.ok(r.queued + r.submitted <= 2 || r.submitted === 0, `never more than --max-queued queued: ${JSON.stringify(r)}`);
  const tokens = await allTokens(tp.pool);
  assert.ok(tokens.every((t) => t.status === 'done'), 'every token done');
  assert.equal(fs.readFileSync(shared, 'utf8').trim().split('\n').length, 8, 'each token ran once');
  const records = await submissions(tp);
  assert.ok(records.length >= 1);
  assert.ok(records.every((r) => r.auto && r.backend === 'slurm'));
  assert.equal(records.reduce((n, r) => n + r.count, 0), log.reduce((n, r) => n + r.submitted, 0), 'one record per submission');
  for (const t of tokens) assert.ok(records.some((r) => String(t.slurm_job_id).startsWith(`${r.job_ids[0]}_`)), `${t._id} ran in an autopilot's pilot`);
});

test('--once rounds: a restart counts the pilots already queued, an empty pool submits nothing', async () => {
  const { tp, account } = await fx.pool();
  await addTokens(tp.pool, Array.from({ length: 5 }, (_, i) => ({ obsid: 'L401', step: 'cal', subbands: [i], command: 'true' })));
  // Held pilots stay queued, so that successive rounds see them.
  const once = (extra: string[] = []) => runCli(autoArgs(tp, account, ['--once', '--max-queued', '3', '--sbatch-option=--hold', ...extra]), { env: fx.slurm.env });

  const first = await once();
  assert.equal(first.code, 0, first.stderr);
  const [r1] = rounds(first.stdout);
  assert.equal(r1!.submitted, 3);
  assert.equal(r1!.claimable, 4, 'claimable is counted up to what a round can use');

  const second = await once();
  assert.equal(second.code, 0, second.stderr);
  const [r2] = rounds(second.stdout);
  assert.equal(r2!.queued, 3, 'the restarted autopilot sees its queued pilots');
  assert.equal(r2!.submitted, 0);

  const dry = await once(['--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal((await submissions(tp)).length, 1, 'a dry run records nothing');

  // Once those pilots are gone (cancelled), the next round replaces them.
  const [record] = await submissions(tp);
  fx.slurm.run('scancel', [record!.job_ids[0]!]);
  await waitFor(() => !fx.slurm.run('squeue', ['-h', '-r', '-o', '%i']).includes(`${record!.job_ids[0]}_`), { timeoutMs: 60_000, what: 'held pilots cancelled' });
  const third = await once();
  const [r3] = rounds(third.stdout);
  assert.equal(r3!.queued, 0);
  assert.equal(r3!.submitted, 3);
  for (const r of await submissions(tp)) fx.slurm.run('scancel', [r.job_ids[0]!]);

  const empty = await fx.pool();
  const drained = await runCli(autoArgs(empty.tp, empty.account, ['--once']), { env: fx.slurm.env });
  assert.equal(drained.code, 0, drained.stderr);
  const [r4] = rounds(drained.stdout);
  assert.equal(r4!.drained, true);
  assert.equal(r4!.submitted, 0);
  assert.equal((await submissions(empty.tp)).length, 0);
});
