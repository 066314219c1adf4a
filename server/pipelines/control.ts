/**
 * Changing a run: cancel it, or rerun it from a step (that step and everything downstream start
 * again, their history kept, optionally with a new image for that step).
 */
import type { Pool } from '../client.js';
import { StateError } from '../errors.js';
import { httpStatus } from '../db-errors.js';
import { ROLES } from '../security.js';
import { isActive, type TokenDb } from '../lease.js';
import { inputFilesOf, nowSeconds, type Token, type TokenStatus } from '../token.js';
import { updateTokens, type UpdateOutcome } from '../tokens/update.js';
import { downstreamOf, parseDefinition } from './definition.js';
import { identifyImage } from './make.js';
import { advance, type AdvanceReport } from './release.js';
import { runTokens } from './runs.js';
import type { ImageRecord, RunDoc } from './run.js';

const CANCELLABLE: readonly TokenStatus[] = ['waiting', 'staging', 'todo'];
export const CANCELLED = 'cancelled: pipeline run cancelled';

/** Changes the run document with compare-and-swap, re-reading on 409. */
async function updateRun(pool: Pool, run: RunDoc, change: (r: RunDoc) => RunDoc): Promise<RunDoc> {
  let current = run;
  for (let i = 0; ; i++) {
    const next = change(current);
    try {
      const res = await pool.db.insert(next as never);
      return { ...next, _rev: res.rev };
    } catch (err) {
      if (httpStatus(err) !== 409 || i >= 10) throw err;
      current = (await pool.db.get(run._id)) as unknown as RunDoc;
    }
  }
}

/** Tokens not started end in error (reason "cancelled"); claimed ones finish, and release nothing: their dependents are cancelled too. */
export async function cancelRun(pool: Pool, run: RunDoc): Promise<UpdateOutcome & { running: number }> {
  const now = nowSeconds();
  await updateRun(pool, run, (r) => ({ ...r, status: 'cancelled', cancelled: now }));
  const tokens = await runTokens(pool, run.run);
  const ids = tokens.filter((t) => CANCELLABLE.includes(t.status)).map((t) => t._id);
  const outcome = await updateTokens(
    pool,
    ids,
    (t) => (CANCELLABLE.includes(t.status) && t.lock === 0 ? { ...t, status: 'error', lock: now, done: now, reason: CANCELLED, times: { ...t.times, error: now }, updated: now } : null),
    { action: 'cancel a pipeline run', role: `${ROLES.agent} or ${ROLES.manager}` },
  );
  return { ...outcome, running: tokens.filter((t) => isActive(t.status)).length };
}

export interface RerunReport extends UpdateOutcome {
  steps: string[];
  image: ImageRecord | null;
  advanced: AdvanceReport;
}

/**
 * `--from` and every step below it start again: the from-step's tokens go to todo (or waiting, to be
 * released at once from their done upstream), the others to waiting. Attempts start from 0; history,
 * error log and the outputs of before (pipeline.previous_output) are kept; results may be replaced.
 */
export async function rerunRun(pool: Pool, run: RunDoc, from: string, image?: string): Promise<RerunReport> {
  const definition = parseDefinition(run.definition.text, run.definition.file);
  if (!definition.steps.some((s) => s.name === from)) throw new StateError(`run ${run.run} has no step ${from}`, `Its steps: ${definition.steps.map((s) => s.name).join(', ')}.`);
  const steps = downstreamOf(definition, from);
  const tokens = await runTokens(pool, run.run, steps);
  const busy = tokens.filter((t) => isActive(t.status));
  if (busy.length) throw new StateError(`${busy.length} tokens of ${steps.join(', ')} are being worked on (e.g. ${busy[0]!._id})`, 'Wait for them to end, then rerun.');
  const now = nowSeconds();
  const record = image ? await identifyImage(image) : null;
  await updateRun(pool, run, (r) => ({
    ...r,
    status: 'active',
    steps: r.steps.map((s) => (s.name === from && record ? { ...s, image: record } : s)),
    reruns: [...r.reruns, { time: now, from, steps, ...(record ? { image: record, previous_image: r.steps.find((s) => s.name === from)?.image ?? null } : {}) }],
  }));
  // Downstream first, so that no token of a lower step is released from an output about to be replaced.
  const order = [...tokens].sort((a, b) => steps.indexOf(b.pipeline!.step) - steps.indexOf(a.pipeline!.step));
  const outcome = await updateTokens(pool, order.map((t) => t._id), (t) => (isActive(t.status) ? null : restart(t, t.pipeline!.step === from, record, from, now)), {
    action: 'rerun a pipeline',
    role: `${ROLES.agent} or ${ROLES.manager}`,
  });
  const fromWaiting = tokens.filter((t) => t.pipeline!.step === from && t.pipeline!.needs.length > 0).map((t) => t._id);
  const advanced = await advance(pool.db as TokenDb, fromWaiting);
  return { ...outcome, steps, image: record, advanced };
}

function restart(t: Token, isFrom: boolean, image: ImageRecord | null, from: string, now: number): Token {
  const link = t.pipeline!;
  const { blocked_by: _b, missing: _m, released: _r, ...rest } = link;
  const previous = Array.isArray(link.previous_output) ? link.previous_output : [];
  const status: TokenStatus = isFrom && link.needs.length === 0 ? 'todo' : 'waiting';
  return {
    ...t,
    status,
    lock: 0,
    done: 0,
    hostname: '',
    lease: null,
    exit_code: null,
    attempts: 0,
    scrub_count: t.scrub_count + 1,
    input: inputFilesOf(t).slice(0, link.own_inputs),
    output: [],
    // The same results location is written again.
    overwrite: true,
    reason: `rerun from ${from}`,
    ...(isFrom && image ? { image: image.path, image_id: image.id } : {}),
    pipeline: { ...rest, ...(t.output.length ? { previous_output: [...previous, { time: now, output: t.output }] } : {}) },
    times: { ...t.times, [status]: now },
    updated: now,
  };
}
