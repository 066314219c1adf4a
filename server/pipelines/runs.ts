/**
 * Runs in a pool: writing a planned run, listing and reading runs, the per-step counts of a run,
 * and the repair pass that decides every waiting token again (`pipeline advance`, `tokens scrub`).
 */
import type { Pool } from '../client.js';
import { StateError } from '../errors.js';
import { httpStatus } from '../db-errors.js';
import { TOKENPOOL_DDOC } from '../design.js';
import { createTokens, type WriteResult } from '../tokens/write.js';
import type { Token } from '../token.js';
import type { TokenDb } from '../lease.js';
import type { Copies } from '../branches.js';
import { DESIGN, readerFromPool, type PoolReader } from '../status/reader.js';
import { advance, type AdvanceReport } from './release.js';
import { isRunDoc, RUN_PREFIX, runDocId, type RunDoc } from './run.js';
import type { RunPlan } from './plan.js';

export interface WriteRunResult extends WriteResult {
  run: string;
  /** false: the run was already in the pool (same definition, observations, files, parameters) */
  runCreated: boolean;
}

/** The run document first, then every token; both answer 409 when present, so writing a run twice adds nothing. */
export async function writeRun(pool: Pool, plan: RunPlan, onProgress?: (written: number) => void): Promise<WriteRunResult> {
  let runCreated = true;
  try {
    await pool.db.insert(plan.run as never);
  } catch (err) {
    if (httpStatus(err) !== 409) throw err;
    runCreated = false;
  }
  const written = await createTokens(pool, plan.tokens, { onProgress: (n) => onProgress?.(n) });
  return { run: plan.run.run, runCreated, ...written };
}

export async function listRuns(reader: PoolReader): Promise<RunDoc[]> {
  const res = await reader.get<{ rows: { doc?: unknown }[] }>('_all_docs', { startkey: RUN_PREFIX, endkey: `${RUN_PREFIX}\ufff0`, include_docs: true });
  return res.rows.map((r) => r.doc).filter(isRunDoc).sort((a, b) => b.created - a.created || (a.run < b.run ? -1 : 1));
}

/** A run by its id, or by a unique prefix of it. */
export async function readRun(pool: Pool, run: string): Promise<RunDoc> {
  try {
    const doc: unknown = await pool.db.get(runDocId(run));
    if (isRunDoc(doc)) return doc;
  } catch (err) {
    if (httpStatus(err) !== 404) throw err;
  }
  const matches = (await listRuns(readerFromPool(pool))).filter((r) => r.run.startsWith(run));
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) throw new StateError(`run ${run} is ambiguous: ${matches.map((r) => r.run).join(', ')}`, 'Give more of the run id.');
  throw new StateError(`no pipeline run ${run} in this pool`, 'See `tokenpool pipeline list`.');
}

export const STATES = ['waiting', 'blocked', 'staging', 'todo', 'locked', 'downloading', 'running', 'uploading', 'done', 'error'] as const;
export type StepState = (typeof STATES)[number];

export interface StepCounts {
  step: string;
  needs: string[];
  total: number;
  counts: Partial<Record<StepState, number>>;
}

/** Per step of the run, in definition order: how many tokens are in each state. */
export async function runCounts(reader: PoolReader, run: RunDoc): Promise<StepCounts[]> {
  const rows = await reader.view<[string, string, StepState], number>(DESIGN, 'pipeline_steps', { startkey: [run.run], endkey: [run.run, {}], group_level: 3 });
  const by = new Map<string, Partial<Record<StepState, number>>>();
  for (const row of rows) {
    const [, step, state] = row.key;
    const c = by.get(step) ?? {};
    c[state] = (c[state] ?? 0) + row.value;
    by.set(step, c);
  }
  return run.steps.map((s) => {
    const counts = by.get(s.name) ?? {};
    return { step: s.name, needs: s.needs.map((n) => n.step), total: Object.values(counts).reduce((a, b) => a + (b ?? 0), 0), counts };
  });
}

/** Ids of a run's tokens of one step in one view state. */
export async function stepTokenIds(pool: Pool, run: string, step: string, state: StepState): Promise<string[]> {
  const res = await pool.db.view(TOKENPOOL_DDOC, 'pipeline_steps', { key: [run, step, state], reduce: false } as never);
  return res.rows.map((r) => r.id);
}

/** Tokens of a run, optionally of some steps only. */
export async function runTokens(pool: Pool, run: string, steps?: readonly string[]): Promise<Token[]> {
  const res = await pool.db.view(TOKENPOOL_DDOC, 'pipeline_steps', { startkey: [run], endkey: [run, {}], reduce: false, include_docs: true } as never);
  return res.rows.map((r) => r.doc as Token).filter((t) => t && (!steps || steps.includes(t.pipeline!.step)));
}

/**
 * The repair pass: every waiting (or blocked) token of the run decided again. Releases that a crash
 * between an upstream's outcome and its dependents' release left undone happen here, as do blocks
 * and unblocks; tokens already right are not written.
 */
export async function advanceRun(pool: Pool, run: RunDoc, copies: Copies | null = null): Promise<AdvanceReport> {
  const ids: string[] = [];
  for (const s of run.steps) for (const state of ['waiting', 'blocked'] as const) ids.push(...(await stepTokenIds(pool, run.run, s.name, state)));
  return advance(pool.db as TokenDb, ids, { copies });
}

export async function advanceAllRuns(pool: Pool, copies: Copies | null = null): Promise<AdvanceReport & { runs: number }> {
  const total: AdvanceReport & { runs: number } = { released: [], blocked: [], unblocked: [], conflicts: 0, runs: 0 };
  for (const run of await listRuns(readerFromPool(pool))) {
    if (run.status !== 'active') continue;
    const r = await advanceRun(pool, run, copies);
    total.runs++;
    total.released.push(...r.released);
    total.blocked.push(...r.blocked);
    total.unblocked.push(...r.unblocked);
    total.conflicts += r.conflicts;
  }
  return total;
}
