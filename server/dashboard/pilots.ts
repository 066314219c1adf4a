/**
 * The pilots panel: the pool's submission records (what `tokenpool pilots` lists) with live pilot
 * counts, read through the GET-only PoolReader. Unlike `tokenpool pilots` it never marks a submission
 * finished (the dashboard writes nothing). Slurm is asked with squeue on this host, shared by every
 * open page; grid pilots are counted as unknown.
 */
import { DESIGN, type PoolReader } from '../status/reader.js';
import { countsOf, isSubmission, readSlurm, type SlurmView, type Submission } from '../submissions.js';
import type { PilotPanel, PilotRecord, PilotStateCounts } from './types.js';

/** squeue's answer is reused this long: a hundred viewers cost slurmctld one query per period */
const SLURM_TTL_MS = 10_000;
/** where squeue fails (no Slurm here) it is tried again only after this long */
const SLURM_RETRY_MS = 5 * 60_000;
/**
 * The panel waits this long for squeue; a slower answer (a host whose Slurm is not configured can
 * take a minute to fail) serves the next request instead of holding this one.
 */
const SLURM_WAIT_MS = 5_000;
const UNANSWERED: SlurmView = { cluster: null, jobs: null };

let slurmRead: { pending: Promise<SlurmView>; answer: SlurmView | null; at: number } | null = null;

function slurmView(): Promise<SlurmView> {
  const r = slurmRead;
  const stale = !r || (r.answer !== null && Date.now() - r.at > (r.answer.jobs ? SLURM_TTL_MS : SLURM_RETRY_MS));
  if (stale) {
    const read = { pending: readSlurm(process.env), answer: null as SlurmView | null, at: 0 };
    void read.pending.then((v) => Object.assign(read, { answer: v, at: Date.now() }));
    slurmRead = read;
  }
  const current = slurmRead!;
  if (current.answer) return Promise.resolve(current.answer);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(UNANSWERED), SLURM_WAIT_MS);
    void current.pending.then((v) => (clearTimeout(timer), resolve(v)));
  });
}

export async function pilotPanel(reader: PoolReader, limit: number): Promise<PilotPanel> {
  const [listed, finishedRows, activeRows] = await Promise.all([
    reader.view(DESIGN, 'submissions', { descending: true, include_docs: true, limit: limit + 1 }),
    reader.view<unknown, number>(DESIGN, 'submission_pilots', { group_level: 1, startkey: ['finished'], endkey: ['finished', {}] }),
    reader.view(DESIGN, 'submission_pilots', { reduce: false, include_docs: true, startkey: ['active'], endkey: ['active', {}] }),
  ]);
  const active = activeRows.map((r) => r.doc as unknown).filter(isSubmission);
  const slurm = active.some((s) => s.backend === 'slurm') ? await slurmView() : null;
  const live = (s: Submission): PilotStateCounts =>
    s.finished_at ? { queued: 0, running: 0, finished: s.count, unknown: 0 } : countsOf(s, slurm);

  const totals: PilotStateCounts = { queued: 0, running: 0, finished: finishedRows.reduce((n, r) => n + Number(r.value ?? 0), 0), unknown: 0 };
  for (const s of active) {
    const c = live(s);
    totals.queued += c.queued;
    totals.running += c.running;
    totals.finished += c.finished;
    totals.unknown += c.unknown;
  }
  const submissions = listed.map((r) => r.doc as unknown).filter(isSubmission);
  return {
    submissions: submissions.slice(0, limit).map((s) => record(s, live(s))),
    more: submissions.length > limit,
    totals,
    slurm: slurm === null ? 'not-needed' : slurm.jobs ? 'read' : 'unavailable',
  };
}

function record(s: Submission, pilots: PilotStateCounts): PilotRecord {
  return {
    id: s._id,
    backend: s.backend,
    jobIds: s.job_ids,
    cluster: s.cluster,
    count: s.count,
    time: s.time,
    who: s.who,
    auto: s.auto,
    finishedAt: s.finished_at,
    pilots,
  };
}
