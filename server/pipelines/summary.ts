/**
 * What scientists see of a run: per step, in order, counts per state, what it waits for, and which
 * upstream failures block what. Shared by `pipeline status`, `status` and the dashboard.
 */
import { DESIGN, type PoolReader } from '../status/reader.js';
import type { Token } from '../token.js';
import { listRuns, runCounts, type StepCounts } from './runs.js';
import type { RunDoc } from './run.js';

export interface Failure {
  token: string;
  step: string;
  reason: string | null;
  /** dependents it keeps from running */
  blocks: number;
  /** the steps those dependents are of (the steps that need this one) */
  blocks_steps: string[];
}

export interface RunSummary {
  run: string;
  name: string;
  status: RunDoc['status'];
  created: number;
  definition: { sha256: string; file: string; git?: RunDoc['definition']['git'] };
  observations: Record<string, string>;
  parameters: RunDoc['parameters'];
  images: Record<string, { path: string; id: string | null } | null>;
  reruns: number;
  steps: (StepCounts & { per: string; active: number; done: number; blocked: number; error: number })[];
  failures: Failure[];
}

const ACTIVE = ['locked', 'downloading', 'running', 'uploading'] as const;
const FAILURES_SHOWN = 20;

export async function summariseRun(reader: PoolReader, run: RunDoc): Promise<RunSummary> {
  const counts = await runCounts(reader, run);
  const steps = counts.map((c) => {
    const s = run.steps.find((x) => x.name === c.step)!;
    return {
      ...c,
      per: s.per === 'group' ? `group of ${s.group}` : s.per,
      active: ACTIVE.reduce((n, st) => n + (c.counts[st] ?? 0), 0),
      done: c.counts.done ?? 0,
      blocked: c.counts.blocked ?? 0,
      error: c.counts.error ?? 0,
    };
  });
  const failures: Failure[] = [];
  for (const s of steps) {
    if (!s.error || failures.length >= FAILURES_SHOWN) continue;
    const rows = await reader.view<unknown, unknown>(DESIGN, 'pipeline_steps', { key: [run.run, s.step, 'error'], reduce: false, include_docs: true, limit: FAILURES_SHOWN - failures.length });
    for (const row of rows) {
      const t = row.doc as unknown as Token;
      const blocks = t.pipeline?.feeds.length ?? 0;
      failures.push({ token: t._id, step: s.step, reason: t.reason, blocks, blocks_steps: blocks ? dependentSteps(run, s.step) : [] });
    }
  }
  return {
    run: run.run,
    name: run.name,
    status: run.status,
    created: run.created,
    definition: { sha256: run.definition.sha256, file: run.definition.file, ...(run.definition.git ? { git: run.definition.git } : {}) },
    observations: run.observations,
    parameters: run.parameters,
    images: Object.fromEntries(run.steps.map((s) => [s.name, s.image])),
    reruns: run.reruns.length,
    steps,
    failures,
  };
}

function dependentSteps(run: RunDoc, step: string): string[] {
  return run.steps.filter((d) => d.needs.some((n) => n.step === step)).map((d) => d.name);
}

/** The text form: a header and the steps as a table (the caller's table()). */
export function renderRun(s: RunSummary, table: (rows: (string | number)[][]) => string): string {
  const git = s.definition.git ? `, git ${s.definition.git.commit.slice(0, 10)}${s.definition.git.dirty ? ' (file changed since)' : ''}` : '';
  const lines = [
    `run ${s.run} (${s.name}) ${s.status}, created ${new Date(s.created * 1000).toISOString()}${s.reruns ? `, rerun ${s.reruns}×` : ''}`,
    `  definition ${s.definition.file} sha256 ${s.definition.sha256.slice(0, 12)}${git}`,
    `  observations ${Object.entries(s.observations).map(([r, o]) => `${r}=${o}`).join(' ')}${Object.keys(s.parameters).length ? `; parameters ${Object.entries(s.parameters).map(([k, v]) => `${k}=${String(v)}`).join(' ')}` : ''}`,
    '',
    table([
      ['step', 'per', 'needs', 'tokens', 'waiting', 'blocked', 'todo', 'running', 'done', 'error', 'progress'],
      ...s.steps.map((st) => [
        st.step,
        st.per,
        st.needs.join(',') || '-',
        st.total,
        (st.counts.waiting ?? 0) + (st.counts.staging ?? 0),
        st.blocked,
        st.counts.todo ?? 0,
        st.active,
        st.done,
        st.error,
        st.total ? `${Math.floor((100 * st.done) / st.total)}%` : '-',
      ]),
    ]),
  ];
  if (s.failures.length) {
    lines.push('', 'failed (blocking what needs them):');
    for (const f of s.failures) lines.push(`  ${f.token}: ${f.reason ?? 'error'}${f.blocks ? `; feeds ${f.blocks} token${f.blocks > 1 ? 's' : ''} of ${f.blocks_steps.join(', ')}` : ''}`);
  }
  return lines.join('\n');
}

/** The pool's active runs, newest first (at most `limit`), for `status`; with an observation, only runs of it. */
export async function activeRunSummaries(reader: PoolReader, opts: { obsid?: string; limit?: number } = {}): Promise<RunSummary[]> {
  const runs = (await listRuns(reader)).filter((r) => r.status === 'active' && (!opts.obsid || Object.values(r.observations).includes(opts.obsid)));
  return Promise.all(runs.slice(0, opts.limit ?? 5).map((r) => summariseRun(reader, r)));
}
