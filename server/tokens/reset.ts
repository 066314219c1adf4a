/**
 * Putting tokens back to todo (PiCaS's "reset"): lock, done, lease and exit code cleared, scrub_count
 * incremented, history and error log kept. Attempts are kept unless asked, so that a token that keeps
 * failing still runs into max_attempts.
 */
import type { Pool } from '../client.js';
import { ROLES } from '../security.js';
import { nowSeconds, type Token } from '../token.js';
import { effectiveStatus } from '../effective-status.js';
import { matchesSelection, scanTokens, type Selection } from './select.js';
import { updateTokens, type UpdateOutcome } from './update.js';
import { advance } from '../pipelines/release.js';

export interface ResetOptions {
  resetAttempts?: boolean;
  dryRun?: boolean;
  now?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ResetReport extends UpdateOutcome {
  matched: number;
  /** selected but already todo: left alone */
  alreadyTodo: number;
  ids: string[];
  /** pipeline tokens a reset upstream token no longer blocks */
  unblocked: number;
}

export function resetToken(t: Token, now: number, resetAttempts: boolean): Token {
  return {
    ...t,
    status: 'todo',
    lock: 0,
    done: 0,
    hostname: '',
    lease: null,
    exit_code: null,
    scrub_count: t.scrub_count + 1,
    attempts: resetAttempts ? 0 : t.attempts,
    reason: `reset from ${effectiveStatus(t)}`,
    times: { ...t.times, todo: now },
    updated: now,
  };
}

const isTodo = (t: Token) => t.status === 'todo' && t.lock === 0 && t.done === 0;

export async function resetTokens(pool: Pool, sel: Selection, opts: ResetOptions = {}): Promise<ResetReport> {
  const now = opts.now ?? nowSeconds();
  const ids: string[] = [];
  let alreadyTodo = 0;
  for await (const t of scanTokens(pool, sel, 500, now)) {
    if (isTodo(t)) alreadyTodo++;
    else ids.push(t._id);
  }
  const report: ResetReport = { matched: ids.length + alreadyTodo, alreadyTodo, ids, changed: 0, skipped: 0, conflicts: 0, unblocked: 0 };
  if (opts.dryRun || ids.length === 0) return report;
  const filter: Selection = { ...sel, ids: undefined };
  const feeds = new Set<string>();
  const outcome = await updateTokens(
    pool,
    ids,
    (t) => {
      if (!matchesSelection(t, filter, now) || isTodo(t)) return null;
      for (const id of t.pipeline?.feeds ?? []) feeds.add(id);
      return resetToken(t, now, opts.resetAttempts ?? false);
    },
    { action: 'reset tokens', role: `${ROLES.agent} or ${ROLES.manager}`, onProgress: (done) => opts.onProgress?.(done, ids.length) },
  );
  // A pipeline token's dependents that its failure blocked may run again once it does.
  const unblocked = feeds.size ? (await advance(pool.db, [...feeds])).unblocked.length : 0;
  return { ...report, ...outcome, unblocked };
}
