/**
 * Submission records: one document per batch submission of pilots (type "submission"), written by
 * `tokenpool submit`, read by `tokenpool pilots`, status and the autopilot. With squeue they tell how
 * many pilots are queued, running and finished, so that nothing needs state outside the pool.
 */
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Pool } from './client.js';
import { withDb, httpStatus, isNotFound } from './db-errors.js';
import { DatabaseError } from './errors.js';
import { TOKENPOOL_DDOC } from './design.js';
import { nowSeconds } from './token.js';
import { slurmClusterName, squeueStates, type ArrayJobStates } from './slurm.js';

export const BACKENDS = ['slurm', 'dirac', 'glite'] as const;
export type Backend = (typeof BACKENDS)[number];

export interface Submission {
  _id: string;
  _rev?: string;
  type: 'submission';
  backend: Backend;
  /** Slurm: the array job id; DIRAC: one id per pilot; gLite: the parametric job's id(s). */
  job_ids: string[];
  /** Slurm cluster name (squeue of another cluster cannot see these jobs); null for grid backends. */
  cluster: string | null;
  /** Pilots submitted */
  count: number;
  time: number;
  /** user@host that submitted */
  who: string;
  /** Submitted by the autopilot */
  auto: boolean;
  /** What was asked (time limit, partition, cores, …); never a secret. */
  options: Record<string, string | number | boolean | null>;
  /** When every pilot was seen finished; null while some may be queued or running. */
  finished_at: number | null;
}

export interface NewSubmission {
  backend: Backend;
  job_ids: string[];
  cluster?: string | null;
  count: number;
  auto?: boolean;
  options?: Submission['options'];
}

export function newSubmission(spec: NewSubmission, now = nowSeconds()): Submission {
  return {
    _id: `submission-${spec.backend}-${now}-${randomBytes(3).toString('hex')}`,
    type: 'submission',
    backend: spec.backend,
    job_ids: spec.job_ids,
    cluster: spec.cluster ?? null,
    count: spec.count,
    time: now,
    who: `${os.userInfo().username}@${os.hostname()}`,
    auto: spec.auto ?? false,
    options: spec.options ?? {},
    finished_at: null,
  };
}

export function isSubmission(doc: unknown): doc is Submission {
  const d = doc as Partial<Submission> | null;
  return (
    !!d &&
    d.type === 'submission' &&
    typeof d.backend === 'string' &&
    (BACKENDS as readonly string[]).includes(d.backend) &&
    Array.isArray(d.job_ids) &&
    typeof d.count === 'number' &&
    typeof d.time === 'number'
  );
}

export async function saveSubmission(pool: Pool, submission: Submission): Promise<Submission> {
  const res = await withDb(pool, 'record the submission', () => pool.db.insert(submission as never));
  return { ...submission, _rev: res.rev };
}

/** A tokenpool view query; a 404 names both causes, a missing database or design documents older than this code. */
export async function queryView(pool: Pool, view: string, params: Record<string, unknown>, action: string) {
  return withDb(pool, action, async () => {
    try {
      return await pool.db.view(TOKENPOOL_DDOC, view, params);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      throw new DatabaseError(
        `${pool.displayUrl} has no view ${TOKENPOOL_DDOC}/${view}: the database does not exist or its design documents are older than this tokenpool`,
        'Run: tokenpool db init --db URL --credentials ADMIN_FILE (it only adds what is missing).',
      );
    }
  });
}

/** Submissions, newest first. */
export async function listSubmissions(pool: Pool, opts: { limit?: number } = {}): Promise<Submission[]> {
  const res = await queryView(pool, 'submissions', { descending: true, include_docs: true, ...(opts.limit ? { limit: opts.limit } : {}) }, 'read submission records');
  return res.rows.map((r) => r.doc as unknown).filter(isSubmission);
}

export interface PilotCounts {
  queued: number;
  running: number;
  finished: number;
  /** Pilots whose state cannot be read here: grid pilots, Slurm pilots of another cluster or without squeue. */
  unknown: number;
}

export interface SubmissionState {
  submission: Submission;
  counts: PilotCounts;
}

export interface StateOptions {
  /** Environment for squeue/scontrol (SLURM_CONF); defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Record finished_at on submissions whose pilots have all finished (needs write access; skipped on 403). */
  markFinished?: boolean;
}

/** The live state of every submission not yet known to be finished. */
export async function activeSubmissionStates(pool: Pool, opts: StateOptions = {}): Promise<SubmissionState[]> {
  const res = await queryView(pool, 'submission_pilots', { reduce: false, include_docs: true, startkey: ['active'], endkey: ['active', {}] }, 'read submission records');
  const active = res.rows.map((r) => r.doc as unknown).filter(isSubmission);
  const slurm = active.some((s) => s.backend === 'slurm') ? await readSlurm(opts.env) : null;
  const states: SubmissionState[] = [];
  for (const submission of active) {
    const counts = countsOf(submission, slurm);
    if (counts.finished === submission.count && opts.markFinished !== false) await markFinished(pool, submission);
    states.push({ submission, counts });
  }
  return states;
}

/** Pilots queued, running, finished (all time) and unknown, over every submission in the pool. */
export async function pilotCounts(pool: Pool, opts: StateOptions = {}): Promise<PilotCounts> {
  // Read the finished sum first: reading the active ones may mark some finished, which must count once.
  const finished = await queryView(pool, 'submission_pilots', { group_level: 1, startkey: ['finished'], endkey: ['finished', {}] }, 'read submission records');
  const total: PilotCounts = { queued: 0, running: 0, finished: finished.rows.reduce((sum, r) => sum + Number(r.value ?? 0), 0), unknown: 0 };
  for (const { counts } of await activeSubmissionStates(pool, opts)) {
    total.queued += counts.queued;
    total.running += counts.running;
    total.finished += counts.finished;
    total.unknown += counts.unknown;
  }
  return total;
}

export interface SlurmView {
  cluster: string | null;
  jobs: Map<string, ArrayJobStates> | null;
}

export async function readSlurm(env: NodeJS.ProcessEnv | undefined): Promise<SlurmView> {
  const [cluster, jobs] = await Promise.all([slurmClusterName(env).catch(() => null), squeueStates(env).catch(() => null)]);
  return { cluster, jobs };
}

export function countsOf(s: Submission, slurm: SlurmView | null): PilotCounts {
  const unknown = { queued: 0, running: 0, finished: 0, unknown: s.count };
  if (s.backend !== 'slurm' || !slurm?.jobs || (s.cluster && slurm.cluster && s.cluster !== slurm.cluster)) return unknown;
  const live = slurm.jobs.get(s.job_ids[0] ?? '');
  const queued = Math.min(live?.queued ?? 0, s.count);
  const running = Math.min(live?.running ?? 0, s.count - queued);
  // Tasks squeue no longer lists have ended (and been purged after MinJobAge).
  return { queued, running, finished: s.count - queued - running, unknown: 0 };
}

async function markFinished(pool: Pool, s: Submission): Promise<void> {
  const finishedAt = nowSeconds();
  let current = s;
  for (let tries = 0; tries < 5; tries++) {
    try {
      const res = await pool.db.insert({ ...current, finished_at: finishedAt } as never);
      s._rev = res.rev;
      s.finished_at = finishedAt;
      return;
    } catch (err) {
      // This account may only read (403): fine. A 409: another reader marked it first, or the record came
      // from a view that lags behind the document (a CouchDB cluster's views read one copy): read it again.
      const status = httpStatus(err);
      if (status === 403) return;
      if (status !== 409) throw err;
      current = (await pool.db.get(s._id)) as unknown as Submission;
      if (current.finished_at !== null) return;
    }
  }
}
