/**
 * The autopilot (`submit slurm --auto`): each round counts claimable and active tokens in the pool and
 * this pool's queued and running pilots (submission records + squeue), and submits enough pilots that
 * every claimable token has one, at most --max-queued waiting. It keeps no state of its own, so it
 * can be restarted at any time or run one round at a time (--once) from crontab or scrontab.
 */
import type { Pool } from '../../server/client.js';
import { activeSubmissionStates, queryView, type Submission } from '../../server/submissions.js';
import { nowSeconds } from '../../server/token.js';
import { printLine } from '../output.js';
import { redactText } from '../../server/redact.js';

export interface Demand {
  /** Tokens an agent could claim now (todo, or with an expired lease), counted up to a cap */
  claimable: number;
  /** Tokens with a lease (being worked on, or expired and about to be reclaimed) */
  active: number;
}

/** Reads the two agent views with a limit: cheap on a large pool. */
export async function poolDemand(pool: Pool, cap: number): Promise<Demand> {
  const now = nowSeconds();
  const action = 'count claimable tokens';
  const [todo, expired, leases] = await Promise.all([
    queryView(pool, 'claimable', { limit: cap }, action),
    queryView(pool, 'leases', { endkey: now, limit: cap }, action),
    queryView(pool, 'leases', { limit: 0 }, action),
  ]);
  return { claimable: Math.min(cap, todo.rows.length + expired.rows.length), active: leases.total_rows };
}

export interface Pilots {
  queued: number;
  running: number;
}

/** Each running pilot will take one claimable token next; the rest need a queued pilot each, up to maxQueued. */
export function pilotsToSubmit(demand: Demand, pilots: Pilots, maxQueued: number): number {
  const wanted = Math.min(maxQueued, Math.max(0, demand.claimable - pilots.running));
  return Math.max(0, wanted - pilots.queued);
}

export interface AutopilotOptions {
  pool: Pool;
  maxQueued: number;
  intervalS: number;
  once: boolean;
  json?: boolean;
  /** Submits `count` pilots; null in a dry run. */
  submit: (count: number) => Promise<Submission | null>;
  env?: NodeJS.ProcessEnv;
}

export interface Round {
  time: number;
  claimable: number;
  active: number;
  queued: number;
  running: number;
  submitted: number;
  job_id: string | null;
  drained: boolean;
}

/** One round: look, maybe submit. */
export async function autopilotRound(opts: AutopilotOptions): Promise<Round> {
  const states = await activeSubmissionStates(opts.pool, { env: opts.env });
  const pilots = { queued: 0, running: 0 };
  for (const { submission, counts } of states) {
    if (submission.backend !== 'slurm') continue;
    pilots.queued += counts.queued;
    pilots.running += counts.running;
  }
  const demand = await poolDemand(opts.pool, opts.maxQueued + pilots.running + 1);
  const drained = demand.claimable === 0 && demand.active === 0;
  const count = drained ? 0 : pilotsToSubmit(demand, pilots, opts.maxQueued);
  const record = count > 0 ? await opts.submit(count) : null;
  return { time: nowSeconds(), ...demand, ...pilots, submitted: count, job_id: record?.job_ids[0] ?? null, drained };
}

/** Rounds until the pool is drained (no claimable and no active tokens), a signal, or one round with `once`. */
export async function runAutopilot(opts: AutopilotOptions): Promise<void> {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    for (;;) {
      let round: Round;
      try {
        round = await autopilotRound(opts);
      } catch (err) {
        // A busy controller or an unreachable database should not end a long-running autopilot:
        // the next round looks again. One round alone (--once) reports the failure to cron.
        if (opts.once) throw err;
        process.stderr.write(redactText(`warning: autopilot round failed (${err instanceof Error ? err.message : String(err)}); retrying in ${opts.intervalS} s\n`));
        await sleep(opts.intervalS * 1000, controller.signal);
        if (controller.signal.aborted) return;
        continue;
      }
      report(round, opts.json);
      if (round.drained || opts.once || controller.signal.aborted) return;
      await sleep(opts.intervalS * 1000, controller.signal);
      if (controller.signal.aborted) return;
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

function report(r: Round, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const what = r.drained
    ? 'pool drained: nothing claimable or running; stopping'
    : r.submitted > 0
      ? `submitted ${r.submitted} pilot${r.submitted === 1 ? '' : 's'}${r.job_id ? ` (array job ${r.job_id})` : ' (dry run)'}`
      : 'enough pilots';
  printLine(`${new Date(r.time * 1000).toISOString()}  claimable ${r.claimable}, active ${r.active}; pilots queued ${r.queued}, running ${r.running}: ${what}`);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
