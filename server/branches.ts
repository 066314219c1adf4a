/**
 * A token's branches on a CouchDB cluster. With n > 1 copies, two writers of the same revision can
 * both be accepted (each by a different copy, 201 or 202) and the document then has two live leaf
 * revisions: a stored conflict. CouchDB shows one of them as the winner, by a rule about revision
 * trees (longest branch, then highest hash) that changes as a branch grows (a heartbeat makes a
 * branch longer). tokenpool therefore decides who owns a conflicted token by a rule of its own that
 * every agent applies alike, whatever it sees later:
 *   1. a branch with a final outcome (done, or error after the last attempt) wins over everything;
 *   2. then a branch with a live claim (a lease), the smallest claim_id first;
 *   3. then any other branch (released tokens), CouchDB's winner first.
 * Everyone who reads all the copies sees the same leaves and names the same owner; losing claims are
 * deleted (their branch ends in a tombstone) so that the conflict goes away.
 */
import type { DocumentScope } from 'nano';
import { httpStatus } from './db-errors.js';
import { ACTIVE_STATUSES, type Attempt, type Token } from './token.js';

type TokenDb = DocumentScope<Token>;

/** How to read a pool whose documents live in several copies. */
export interface Copies {
  /** copies of each document (the cluster's n): reads wait for all of them */
  n: number;
  /** how long a fresh claim is left to reach every copy before it is checked */
  settleMs: number;
}

/** The default settle time: concurrent writes to a cluster land on every copy within milliseconds; this leaves room for a loaded node. */
export const SETTLE_MS = 300;

function rank(t: Token): number {
  if (t.status === 'done' || (t.status === 'error' && t.lease === null && t.done > 0)) return 0;
  if (t.lease && ACTIVE_STATUSES.includes(t.status)) return 1;
  return 2;
}

/** The claim a branch stands for: its lease, or the attempt it closed ('' for PiCaS-format tokens, which have neither). */
export function branchClaim(t: Token): string {
  return t.lease?.claim_id ?? t.history?.at(-1)?.claim_id ?? '';
}

const SUPERSEDED = '(superseded: cluster conflict)';

/** An attempt of a losing branch as the owner's history records it. */
export function superseded(a: Attempt): Attempt {
  return a.reason.endsWith(SUPERSEDED) ? a : { ...a, reason: `${a.reason} ${SUPERSEDED}` };
}

/** The owner among live leaves (the first is CouchDB's winner), by the rule above. */
export function rightful(leaves: readonly Token[]): Token {
  let best = leaves[0]!;
  for (const t of leaves.slice(1)) {
    const [a, b] = [rank(t), rank(best)];
    if (a < b || (a === b && a < 2 && branchClaim(t) < branchClaim(best))) best = t;
  }
  return best;
}

/**
 * Every live leaf of a token, read from all copies, CouchDB's winner first; empty when the token is
 * gone. `open_revs=all` merges the leaves of every copy (a plain GET with conflicts=true reports the
 * conflicts of one copy only, and misses a claim that the other copies hold).
 */
export async function liveLeaves(db: TokenDb, id: string, copies: Copies): Promise<Token[]> {
  const replies = (await db.get(id, { open_revs: 'all', r: copies.n } as never)) as unknown as { ok?: Token & { _deleted?: boolean } }[];
  const live = replies.flatMap((r) => (r.ok && !r.ok._deleted ? [r.ok] : []));
  return live.sort((a, b) => revOrder(b._rev!) - revOrder(a._rev!) || (a._rev! < b._rev! ? 1 : a._rev! > b._rev! ? -1 : 0));
}

/** CouchDB picks the winner by revision depth, then by the higher revision string. */
function revOrder(rev: string): number {
  return Number(rev.slice(0, rev.indexOf('-')));
}

/** Ends a branch with a tombstone; false when it is no longer a leaf (someone ended or extended it). */
export async function dropBranch(db: TokenDb, t: Token): Promise<boolean> {
  try {
    await db.destroy(t._id, t._rev!);
    return true;
  } catch (err) {
    if (httpStatus(err) === 404 || httpStatus(err) === 409) return false;
    throw err;
  }
}

export interface Resolved {
  token: Token;
  /** live leaves that lost; the caller decides what to do with them */
  losers: Token[];
}

/** Reads all copies and names the owner. */
export async function resolveToken(db: TokenDb, id: string, copies: Copies): Promise<Resolved> {
  const leaves = await liveLeaves(db, id, copies);
  // A token deleted by a manager: as CouchDB answers a plain read of it.
  if (leaves.length === 0) throw Object.assign(new Error(`token ${id} was deleted`), { statusCode: 404, reason: 'deleted' });
  const token = rightful(leaves);
  return { token, losers: leaves.filter((t) => t !== token) };
}

/**
 * The token as its owner sees it: losing claims are dropped on the way (they can never win later:
 * their rank is fixed by their claim id). Losing branches with an outcome are left for
 * `tokens conflicts --resolve`, which records them in the winner's history first.
 */
export async function readOwned(db: TokenDb, id: string, copies: Copies): Promise<Token> {
  const { token, losers } = await resolveToken(db, id, copies);
  await dropLosingClaims(db, losers);
  return token;
}

export async function dropLosingClaims(db: TokenDb, losers: readonly Token[]): Promise<void> {
  for (const l of losers) if (rank(l) === 1) await dropBranch(db, l);
}
