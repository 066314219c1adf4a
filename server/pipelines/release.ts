/**
 * The pool drives a pipeline: when an upstream token ends, its dependents are decided again. A
 * dependent whose needs are met goes from `waiting` to `todo` with the upstream outputs as inputs
 * (its *release*); one that can no longer run is marked blocked; one whose failed upstream was
 * reset is unblocked.
 *
 * Race-free without a lock: the decision is a pure function of the dependent and its upstream
 * tokens, and the write is a compare-and-swap on the dependent's _rev. Agents finishing upstream
 * tokens at the same moment both decide; one write wins, the other gets 409, re-reads a token that
 * is no longer waiting and does nothing. Each agent decides after its own outcome is stored, so the
 * last one to finish always sees every upstream done. On a CouchDB cluster two copies may accept
 * both writes; but every field of the released token, its times included, comes from the documents
 * it was decided from, so both writers send the same body on the same revision and CouchDB derives
 * the same revision id from it: one leaf, no conflict. Upstream tokens are read from every copy there
 * (branches.ts), so that a finish another agent just wrote on one copy is seen.
 */
import type { TokenDb } from '../lease.js';
import { httpStatus } from '../db-errors.js';
import { readOwned, type Copies } from '../branches.js';
import { effectiveStatus } from '../effective-status.js';
import { inputFilesOf, type InputFile, type Token } from '../token.js';

export interface AdvanceReport {
  released: string[];
  blocked: string[];
  unblocked: string[];
  /** dependents still conflicting after the retries (a later finish or `pipeline advance` decides them) */
  conflicts: number;
}

type UpState = 'done' | 'failed' | 'pending';

/** A blocked token counts as failed for its own dependents, so that a failure blocks everything below it. */
function upState(u: Token | undefined): UpState {
  if (!u) return 'failed';
  const s = effectiveStatus(u);
  if (s === 'done') return 'done';
  if (s === 'error' || (u.status === 'waiting' && (u.pipeline?.blocked_by?.length ?? 0) > 0)) return 'failed';
  return 'pending';
}

/** The dependent as it should be now, or null when it stays as it is. Deterministic: see the header. */
export function decide(t: Token, upstream: ReadonlyMap<string, Token>): Token | null {
  const link = t.pipeline;
  if (!link || t.status !== 'waiting' || t.lock !== 0 || t.done !== 0) return null;
  const failed: Token[] = [];
  const gone: string[] = [];
  let pending = false;
  let impossible = false;
  for (const need of link.needs) {
    let done = 0;
    let open = 0;
    for (const id of need.tokens) {
      const u = upstream.get(id);
      const s = upState(u);
      if (s === 'done') done++;
      else if (s === 'pending') open++;
      else if (u) failed.push(u);
      else gone.push(id);
    }
    const total = need.tokens.length;
    if (open > 0) pending = true;
    if (total > 0 && (done + open) / total < need.min_fraction - 1e-9) impossible = true;
  }
  const failedIds = [...failed.map((u) => u._id), ...gone].sort();
  const blocked = link.blocked_by ?? [];

  if (impossible) {
    if (sameList(blocked, failedIds)) return null;
    const first = failed[0];
    const why = first ? `${first._id} failed${first.reason ? ` (${first.reason})` : ''}` : `${gone[0]} is gone`;
    const more = failedIds.length > 1 ? ` and ${failedIds.length - 1} more` : '';
    return {
      ...t,
      reason: `blocked: ${why}${more}`,
      pipeline: { ...link, blocked_by: failedIds },
      updated: Math.max(t.updated, ...failed.map((u) => u.done)),
    };
  }
  if (pending) {
    if (blocked.length === 0) return null;
    const { blocked_by: _, ...rest } = link;
    return { ...t, reason: null, pipeline: rest, updated: Math.max(t.updated, ...link.needs.flatMap((n) => n.tokens.map((id) => upstream.get(id)?.updated ?? 0))) };
  }

  // Every need met (all done, or enough of them with the rest failed for good): release.
  const ups = link.needs.flatMap((n) => n.tokens.map((id) => upstream.get(id)).filter((u): u is Token => upState(u) === 'done'));
  const time = Math.max(t.updated, ...ups.map((u) => u.done));
  const own = inputFilesOf(t).slice(0, link.own_inputs);
  const input: InputFile[] = [...own, ...ups.flatMap((u) => u.output.map((o) => ({ url: o.url, size: o.size, adler32: o.adler32 })))];
  const { blocked_by: _, ...rest } = link;
  return {
    ...t,
    status: 'todo',
    input,
    reason: failedIds.length ? `released without ${failedIds.length} upstream tokens (min_fraction)` : null,
    pipeline: { ...rest, released: time, ...(failedIds.length ? { missing: failedIds } : {}) },
    times: { ...t.times, todo: time },
    updated: time,
  };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const CHUNK = 500;
/** Dependents decided and written per request, and requests in flight: a wide fan-out (one solve, thousands of target subbands) is released in parallel pieces. */
const RELEASE_CHUNK = 200;
const RELEASE_PARALLEL = 4;

/**
 * Decides the given dependents again and writes what changed, in bulk (one write per dependent that
 * changes); blocking and unblocking go on down to their own dependents. `known` are tokens the caller
 * has just written (the finished upstream token), used without reading them again.
 */
export async function advance(db: TokenDb, ids: readonly string[], opts: { copies?: Copies | null; known?: readonly Token[] } = {}): Promise<AdvanceReport> {
  const report: AdvanceReport = { released: [], blocked: [], unblocked: [], conflicts: 0 };
  const upstream = new Map<string, Token>((opts.known ?? []).map((t) => [t._id, t]));
  /** upstream tokens read from every copy (cluster) or just written by the caller */
  const confirmed = new Set<string>(upstream.keys());
  let queue = [...new Set(ids)];
  const seen = new Set<string>();
  while (queue.length) {
    const fresh = queue.filter((id) => !seen.has(id));
    fresh.forEach((id) => seen.add(id));
    const chunks: string[][] = [];
    for (let i = 0; i < fresh.length; i += RELEASE_CHUNK) chunks.push(fresh.slice(i, i + RELEASE_CHUNK));
    const next: string[] = [];
    for (let i = 0; i < chunks.length; i += RELEASE_PARALLEL) {
      const cascades = await Promise.all(chunks.slice(i, i + RELEASE_PARALLEL).map((c) => advanceChunk(db, c, upstream, opts.copies ?? null, report, confirmed)));
      for (const c of cascades) next.push(...c);
    }
    queue = next;
  }
  return report;
}

async function advanceChunk(db: TokenDb, ids: string[], upstream: Map<string, Token>, copies: Copies | null, report: AdvanceReport, confirmed: Set<string>): Promise<string[]> {
  const waiting = (await fetchMany(db, ids)).filter((t) => t.status === 'waiting' && t.pipeline);
  const needed = [...new Set(waiting.flatMap((t) => t.pipeline!.needs.flatMap((n) => n.tokens)))].filter((id) => !upstream.has(id));
  for (const u of await fetchMany(db, needed)) upstream.set(u._id, u);
  if (copies) for (const t of waiting) await confirmPending(db, t, upstream, copies, confirmed);

  const changes = new Map<string, Token>();
  for (const t of waiting) {
    const next = decide(t, upstream);
    if (next) changes.set(t._id, next);
  }
  if (changes.size === 0) return [];
  const rows = (await db.bulk({ docs: [...changes.values()] })) as { id: string; ok?: boolean; error?: string; reason?: string }[];
  const written: Token[] = [];
  for (const row of rows) {
    const doc = changes.get(row.id)!;
    if (row.ok) written.push(doc);
    else if (row.error === 'conflict') {
      const again = await retryOne(db, row.id, copies);
      if (again === 'conflict') report.conflicts++;
      else if (again) written.push(again);
    } else throw new Error(`the pool refused to advance ${row.id}: ${row.error}: ${row.reason}`);
  }
  const cascade: string[] = [];
  for (const t of written) {
    upstream.set(t._id, t);
    if (t.status === 'todo') report.released.push(t._id);
    else if (t.pipeline?.blocked_by?.length) report.blocked.push(t._id);
    else report.unblocked.push(t._id);
    if (t.status === 'waiting') cascade.push(...t.pipeline!.feeds);
  }
  return cascade;
}

/** Someone wrote the dependent meanwhile: read it and its upstream again (from every copy on a cluster) and decide once more. */
async function retryOne(db: TokenDb, id: string, copies: Copies | null): Promise<Token | null | 'conflict'> {
  for (let i = 0; i < 10; i++) {
    const t = copies ? await readOwned(db, id, copies) : ((await db.get(id)) as Token);
    if (t.status !== 'waiting' || !t.pipeline) return null;
    const ups = await readUpstream(db, t.pipeline.needs.flatMap((n) => n.tokens), copies);
    const next = decide(t, new Map(ups.map((u) => [u._id, u])));
    if (!next) return null;
    try {
      const res = await db.insert(next);
      return { ...next, _rev: res.rev };
    } catch (err) {
      if (httpStatus(err) !== 409) throw err;
    }
  }
  return 'conflict';
}

async function fetchMany(db: TokenDb, ids: readonly string[]): Promise<Token[]> {
  const out: Token[] = [];
  for (let i = 0; i < ids.length; i += CHUNK) {
    const res = await db.fetch({ keys: ids.slice(i, i + CHUNK) });
    for (const row of res.rows) {
      const doc = (row as { doc?: Token | null }).doc;
      if (doc && doc.type === 'token') out.push(doc);
    }
  }
  return out;
}

/**
 * On a cluster a quorum read may miss a finish written to one copy a moment ago: a token it shows
 * pending is read again from every copy before the dependent is left waiting for it. One pending
 * token confirmed is enough to wait (whoever finishes it decides again), so a wide fan-in costs its
 * early finishers one such read, not one per upstream token. Finished states (done, error) are final
 * and taken from the quorum read.
 */
async function confirmPending(db: TokenDb, t: Token, upstream: Map<string, Token>, copies: Copies, confirmed: Set<string>): Promise<void> {
  const needs = t.pipeline!.needs.flatMap((n) => n.tokens);
  for (;;) {
    const doubtful = needs.filter((id) => !confirmed.has(id) && upState(upstream.get(id)) === 'pending');
    if (doubtful.length === 0 || needs.some((id) => confirmed.has(id) && upState(upstream.get(id)) === 'pending')) return;
    const batch = doubtful.slice(0, 8);
    for (const u of await readUpstream(db, batch, copies)) upstream.set(u._id, u);
    batch.forEach((id) => confirmed.add(id));
  }
}

/** Upstream tokens: on a cluster from every copy (a finish just written may be on one copy only), else one bulk read. */
async function readUpstream(db: TokenDb, ids: readonly string[], copies: Copies | null): Promise<Token[]> {
  if (!copies) return fetchMany(db, ids);
  const out: Token[] = [];
  const PARALLEL = 8;
  for (let i = 0; i < ids.length; i += PARALLEL) {
    const got = await Promise.all(
      ids.slice(i, i + PARALLEL).map((id) =>
        readOwned(db, id, copies).catch((err: unknown) => {
          if (httpStatus(err) === 404) return null;
          throw err;
        }),
      ),
    );
    for (const t of got) if (t) out.push(t);
  }
  return out;
}

/** After a token's outcome is stored: its dependents, when it ended for good (done, or error with no attempt left). */
export function dependentsToAdvance(t: Token): string[] {
  if (!t.pipeline || t.pipeline.feeds.length === 0) return [];
  const s = effectiveStatus(t);
  return s === 'done' || s === 'error' ? t.pipeline.feeds : [];
}
