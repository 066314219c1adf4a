/**
 * Stored conflicts on tokens (a CouchDB cluster accepted two writes of one revision: branches.ts), found
 * through the `conflicts` view and resolved by tokenpool's ownership rule: the owner's branch stays,
 * the attempts of every other branch go into the owner's history (marked "superseded"), then the other
 * branches end in tombstones. What agents do for a conflict they meet, for all the others.
 */
import type { Pool } from '../client.js';
import { TOKENPOOL_DDOC } from '../design.js';
import { httpStatus } from '../db-errors.js';
import { branchClaim, dropBranch, resolveToken, superseded, type Copies } from '../branches.js';
import { nowSeconds, type Attempt, type Token } from '../token.js';

export interface Branch {
  rev: string;
  status: string;
  claim: string;
}

export interface ConflictEntry {
  id: string;
  owner: Branch;
  losers: Branch[];
  /** attempts added to the owner's history */
  recorded: number;
  action: 'resolved' | 'would resolve' | 'changed meanwhile';
}

const branch = (t: Token): Branch => ({ rev: t._rev!, status: t.status, claim: branchClaim(t) });

/** Ids of tokens with a stored conflict. */
export async function conflictedTokens(pool: Pool): Promise<string[]> {
  const res = await pool.db.view(TOKENPOOL_DDOC, 'conflicts', { reduce: false });
  return res.rows.map((r) => r.id);
}

/** How many copies the pool keeps (the cluster's n; 1 on a single node). */
export async function poolCopies(pool: Pool): Promise<Copies> {
  const info = (await pool.db.info()) as unknown as { cluster?: { n?: number } };
  return { n: info.cluster?.n ?? 1, settleMs: 0 };
}

/** The attempts a losing branch made that the owner does not know of, as the owner will record them. */
function supersededAttempts(owner: Token, loser: Token, now: number): Attempt[] {
  // PiCaS-format tokens have no history to merge: their losing branches just end.
  if (!owner.history || !loser.history) return [];
  const known = new Set(owner.history.map((a) => a.claim_id));
  const closed = loser.history.filter((a) => !known.has(a.claim_id));
  const live: Attempt[] =
    loser.lease && !known.has(loser.lease.claim_id)
      ? [{ attempt: loser.attempts, claim_id: loser.lease.claim_id, owner: loser.lease.owner, hostname: loser.hostname, batch_job_id: null, start: loser.lock, end: now, exit_code: null, reason: 'claimed' }]
      : [];
  return [...closed, ...live].map(superseded);
}

/** Resolves one token's conflict; re-decides from fresh copies when someone wrote meanwhile. */
async function resolveOne(pool: Pool, id: string, copies: Copies, dryRun: boolean): Promise<ConflictEntry | null> {
  for (let tries = 0; tries < 5; tries++) {
    const { token: owner, losers } = await resolveToken(pool.db, id, copies);
    if (losers.length === 0) return null;
    const extra = losers.flatMap((l) => supersededAttempts(owner, l, nowSeconds()));
    const entry: ConflictEntry = { id, owner: branch(owner), losers: losers.map(branch), recorded: extra.length, action: dryRun ? 'would resolve' : 'resolved' };
    if (dryRun) return entry;
    if (extra.length) {
      try {
        await pool.db.insert({ ...owner, history: [...owner.history, ...extra], updated: nowSeconds() });
      } catch (err) {
        if (httpStatus(err) === 409) continue;
        throw err;
      }
    }
    for (const l of losers) await dropBranch(pool.db, l);
    return entry;
  }
  const { token: owner, losers } = await resolveToken(pool.db, id, copies);
  return { id, owner: branch(owner), losers: losers.map(branch), recorded: 0, action: 'changed meanwhile' };
}

/** Finds and (unless dryRun) resolves every stored conflict on a token. */
export async function resolveConflicts(pool: Pool, opts: { dryRun?: boolean } = {}): Promise<ConflictEntry[]> {
  const copies = await poolCopies(pool);
  const entries: ConflictEntry[] = [];
  for (const id of await conflictedTokens(pool)) {
    const entry = await resolveOne(pool, id, copies, opts.dryRun ?? false);
    if (entry) entries.push(entry);
  }
  return entries;
}
