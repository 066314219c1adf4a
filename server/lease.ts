/**
 * The life of a claim on a token, shared by the agent and `tokens scrub`: claim, heartbeat, phase,
 * finish, release (preemption) and expire as pure functions on Token, plus conflict-safe writes over
 * nano. Every transition after the claim names the claim_id it acts for and does nothing when the
 * token's lease no longer carries it, so an agent that lost its lease can never overwrite the new holder.
 */
import { randomUUID } from 'node:crypto';
import type { DocumentScope } from 'nano';
import { ACTIVE_STATUSES, EXIT, type Attempt, type OutputFile, type Token, type TokenStatus, type Upload } from './token.js';
import { httpStatus } from './db-errors.js';
import { branchClaim, dropBranch, dropLosingClaims, readOwned, resolveToken, type Copies } from './branches.js';

/** Reason recorded when a lease ran out without a heartbeat. */
export const LEASE_EXPIRED = 'lease expired';
export const PREEMPTED = 'preempted';
/** Prefix of the reason recorded when a node could not run the token (no proxy, no runtime). */
export const NODE_PROBLEM = 'node problem';
export const DONE = 'done';
/** Preemptions (SIGTERM from the batch system, node problems) that do not count against max_attempts. */
export const FREE_PREEMPTIONS = 3;

/** Whether an attempt ended for a reason outside the token: it is given back, up to FREE_PREEMPTIONS. */
function isPreemption(reason: string): boolean {
  return reason === PREEMPTED || reason.startsWith(`${NODE_PROBLEM}: `);
}

export interface BatchIds {
  slurm_job_id: string | null;
  dirac_job_id: string | null;
  wms_job_id: string | null;
  pbs_job_id: string | null;
}

/** Who claims: one agent process. */
export interface Claimant {
  /** Unique per agent process, e.g. host:pid:random */
  owner: string;
  hostname: string;
  batch: BatchIds;
}

/** How an attempt ended, as the agent reports it. */
export interface Outcome {
  /** done: success; retry: failed, may run again; fatal: failed, another attempt cannot help; preempted: stopped by us */
  result: 'done' | 'retry' | 'fatal' | 'preempted';
  exitCode: number | null;
  /** "done", "exit code 1", "time limit of 60 s exceeded", "checksum mismatch", … */
  reason: string;
  /** what went wrong in full (URL, path, what to do), for the token's error log */
  detail?: string;
  /** Unix time the attempt ended */
  end: number;
  /** seconds per phase */
  phases: Record<string, number>;
  /** Unix time each phase began, recorded in `times` (phases too short to be written on their own) */
  started?: Partial<Record<'downloading' | 'running' | 'uploading', number>>;
  output?: OutputFile[];
  /** top-level fields to record (host facts, provenance) */
  facts?: Record<string, unknown>;
  /** inline attachments to add: name → {content_type, data (base64)} */
  attachments?: Record<string, { content_type: string; data: string }>;
}

export function isActive(status: TokenStatus): boolean {
  return ACTIVE_STATUSES.includes(status);
}

export function leaseExpired(t: Token, now: number): boolean {
  return isActive(t.status) && t.lease !== null && t.lease.expires <= now;
}

/** Whether an agent may claim the token now: fresh work, or a claim whose lease ran out. */
export function claimability(t: Token, now: number): 'todo' | 'expired' | null {
  if (t.status === 'todo' && t.lock === 0 && t.done === 0) return 'todo';
  if (leaseExpired(t, now)) return 'expired';
  return null;
}

export function batchJobId(t: Token): string | null {
  for (const key of ['slurm_job_id', 'dirac_job_id', 'wms_job_id', 'pbs_job_id']) {
    const v = t[key];
    if (typeof v === 'string' && v) return v;
  }
  return null;
}

/** Takes a claimable token: lock, lease, one more attempt. The caller writes it with the read _rev (compare-and-swap). */
export function claim(t: Token, who: Claimant, leaseSeconds: number, now: number, claimId: string = randomUUID()): Token {
  if (t.status !== 'todo') throw new Error(`token ${t._id} is ${t.status}, not todo: expire it first`);
  return {
    ...t,
    ...who.batch,
    status: 'locked',
    lock: now,
    done: 0,
    exit_code: null,
    hostname: who.hostname,
    attempts: t.attempts + 1,
    lease: { owner: who.owner, claim_id: claimId, expires: now + leaseSeconds, heartbeat: now },
    times: { ...t.times, locked: now },
    updated: now,
  };
}

export function holds(t: Token, claimId: string): boolean {
  return t.lease !== null && t.lease.claim_id === claimId && isActive(t.status);
}

/** Extends the lease; null when the claim is no longer ours. */
export function heartbeat(t: Token, claimId: string, leaseSeconds: number, now: number): Token | null {
  if (!holds(t, claimId)) return null;
  return { ...t, lease: { ...t.lease!, expires: now + leaseSeconds, heartbeat: now }, updated: now };
}

/** Enters a phase (downloading, running, uploading) that began at `since` and extends the lease; null when the claim is no longer ours. */
export function enterPhase(t: Token, claimId: string, status: 'downloading' | 'running' | 'uploading', leaseSeconds: number, now: number, since: number = now): Token | null {
  const beat = heartbeat(t, claimId, leaseSeconds, now);
  if (!beat) return null;
  return { ...beat, status, times: { ...beat.times, [status]: since } };
}

/**
 * Records an upload of our attempt (before it is published under its final name) and extends the lease;
 * null when the claim is no longer ours: then the upload must not be published.
 */
export function recordUpload(t: Token, claimId: string, upload: Upload, leaseSeconds: number, now: number): Token | null {
  const beat = heartbeat(t, claimId, leaseSeconds, now);
  if (!beat) return null;
  const others = (t.stage_out_uploads ?? []).filter((u) => !(u.claim_id === upload.claim_id && u.url === upload.url));
  return { ...beat, stage_out_uploads: [...others, upload] };
}

/** Ends a lease that ran out: the attempt goes to history as "lease expired"; the token to todo, or error after max_attempts. */
export function expire(t: Token, now: number): Token {
  if (!leaseExpired(t, now)) return t;
  return close(t, { result: 'retry', exitCode: null, reason: LEASE_EXPIRED, end: now, phases: {} }, now);
}

/**
 * Records how our attempt ended. Null when the claim is no longer ours. A result that arrives after
 * our lease expired is still kept when nobody claimed the token since (the expiry is then undone).
 */
export function finish(t: Token, claimId: string, outcome: Outcome, now: number): Token | null {
  if (holds(t, claimId)) return close(t, outcome, now);
  const last = t.history[t.history.length - 1];
  const orphaned =
    t.lease === null && (t.status === 'todo' || t.status === 'error') && last?.claim_id === claimId && last.reason === LEASE_EXPIRED;
  if (!orphaned) return null;
  const restored: Token = {
    ...t,
    status: 'running',
    lock: last.start,
    done: 0,
    hostname: last.hostname,
    history: t.history.slice(0, -1),
    error: t.error.slice(0, -1),
    scrub_count: t.status === 'todo' ? Math.max(0, t.scrub_count - 1) : t.scrub_count,
    lease: { owner: last.owner, claim_id: claimId, expires: now, heartbeat: now },
  };
  return close(restored, outcome, now);
}

/** Gives the token back after SIGTERM: todo, not counted against max_attempts for the first few preemptions. */
export function release(t: Token, claimId: string, end: number, phases: Record<string, number>, now: number): Token | null {
  return finish(t, claimId, { result: 'preempted', exitCode: null, reason: PREEMPTED, end, phases }, now);
}

/** Appends the current attempt to history and moves the token to done, todo or error. */
function close(t: Token, o: Outcome, now: number): Token {
  const lease = t.lease!;
  const attempt: Attempt = {
    attempt: t.attempts,
    claim_id: lease.claim_id,
    owner: lease.owner,
    hostname: t.hostname,
    batch_job_id: batchJobId(t),
    start: t.lock,
    end: o.end,
    exit_code: o.exitCode,
    reason: o.result === 'done' ? DONE : o.reason,
    ...(Object.keys(o.phases).length ? { phases: o.phases } : {}),
  };
  const history = [...t.history, attempt];
  const base: Token = {
    ...t,
    ...o.facts,
    _attachments: o.attachments ? { ...t._attachments, ...o.attachments } : t._attachments,
    lease: null,
    history,
    times: { ...t.times, ...o.started },
    updated: now,
  };
  if (!o.attachments && !t._attachments) delete base._attachments;
  if (o.output) base.output = o.output;

  if (o.result === 'done') {
    return { ...base, status: 'done', done: now, exit_code: 0, reason: null, times: { ...base.times, done: now } };
  }
  const preemptions = history.filter((a) => isPreemption(a.reason)).length;
  const counted = o.result !== 'preempted' || preemptions > FREE_PREEMPTIONS;
  // A free preemption gives its attempt back, so the next claim reuses the number.
  const attempts = counted ? t.attempts : t.attempts - 1;
  const failure = { time: now, message: `attempt ${t.attempts} on ${t.hostname || 'unknown host'}: ${o.detail ?? o.reason}` };
  if (o.result === 'fatal' || (counted && attempts >= t.max_attempts)) {
    return {
      ...base,
      attempts,
      status: 'error',
      lock: t.lock || now,
      done: now,
      exit_code: o.exitCode ?? (o.reason === LEASE_EXPIRED ? EXIT.leaseExpired : 1),
      reason: o.result === 'fatal' ? o.reason : giveUpReason(history, attempts),
      error: [...t.error, failure],
      times: { ...base.times, error: now },
    };
  }
  return {
    ...base,
    attempts,
    status: 'todo',
    lock: 0,
    done: 0,
    exit_code: null,
    reason: o.reason,
    scrub_count: t.scrub_count + 1,
    error: [...t.error, failure],
    times: { ...base.times, todo: now },
  };
}

const TIMES = ['never', 'once', 'twice', 'three times', 'four times', 'five times', 'six times', 'seven times', 'eight times', 'nine times', 'ten times'];

/** "lease expired three times", "exit code 1 twice", or the list of reasons when they differ. */
export function giveUpReason(history: readonly Attempt[], attempts: number): string {
  let free = 0;
  const counted = history.filter((a) => {
    if (a.reason === DONE) return false;
    if (isPreemption(a.reason)) return ++free > FREE_PREEMPTIONS;
    return true;
  });
  const recent = counted.slice(-attempts).map((a) => a.reason);
  const n = recent.length;
  if (n > 0 && recent.every((r) => r === recent[0])) return `${recent[0]} ${TIMES[n] ?? `${n} times`}`;
  return `failed ${TIMES[n] ?? `${n} times`}: ${recent.join(', ')}`;
}

export type TokenDb = DocumentScope<Token>;

export interface UpdateOptions {
  /** The token as last read or written, to try without a GET first (not on a cluster: see copies) */
  known?: Token;
  /** Give up after this many 409s in a row */
  tries?: number;
  /** On a CouchDB cluster: read every copy and write on the owner's branch (branches.ts) */
  copies?: Copies | null;
}

/**
 * Read-modify-write with compare-and-swap on _rev: on 409 re-read and re-apply `change`. `change`
 * returns null to write nothing (e.g. the lease is no longer ours); the result is then null too.
 * Network failures propagate, so that the caller can journal the write and retry later.
 */
export async function updateToken(db: TokenDb, id: string, change: (t: Token) => Token | null, opts: UpdateOptions = {}): Promise<Token | null> {
  const { copies } = opts;
  let current = copies ? null : (opts.known ?? null);
  const tries = opts.tries ?? 20;
  for (let attempt = 0; ; attempt++) {
    if (!current) current = copies ? await readOwned(db, id, copies) : ((await db.get(id)) as Token);
    const next = change(current);
    if (!next) return null;
    try {
      const res = await db.insert(next);
      return { ...next, _rev: res.rev };
    } catch (err) {
      if (httpStatus(err) !== 409 || attempt + 1 >= tries) throw err;
      current = null;
    }
  }
}

/** Writes a claimed token; the _rev it carries makes the PUT a compare-and-swap. Null on 409 (someone was faster). */
export async function writeClaim(db: TokenDb, claimed: Token): Promise<Token | null> {
  try {
    const res = await db.insert(claimed);
    return { ...claimed, _rev: res.rev };
  } catch (err) {
    if (httpStatus(err) === 409) return null;
    throw err;
  }
}

/**
 * Fencing against a CouchDB cluster accepting two claims (both 201/202, a stored conflict): after the
 * settle time, reads all copies (a read at r = n also copies what a lagging copy missed, so a claim
 * written later on the same base is refused everywhere) and applies tokenpool's ownership rule
 * (branches.ts). The owner drops the losing claims; a loser drops its own branch and backs off.
 * True when our claim stands.
 */
export async function fence(db: TokenDb, claimed: Token, copies: Copies): Promise<boolean> {
  await new Promise((resolve) => setTimeout(resolve, copies.settleMs));
  const claimId = claimed.lease!.claim_id;
  const { token, losers } = await resolveToken(db, claimed._id, copies);
  if (holds(token, claimId)) {
    await dropLosingClaims(db, losers);
    return true;
  }
  for (const mine of losers.filter((l) => branchClaim(l) === claimId)) await dropBranch(db, mine);
  return false;
}

export interface SweepEntry {
  id: string;
  attempt: number;
  owner: string;
  expired: number;
  /** where the sweep puts (or would put) the token */
  to: 'todo' | 'error';
}

export interface SweepReport {
  expired: SweepEntry[];
  /** changed by someone else between read and write (a heartbeat came in, or an agent reclaimed it) */
  skipped: number;
}

/**
 * Ends every lease that ran out (what `tokens scrub` does, and what agents do one token at a time on
 * their claim path): the attempt goes to history as "lease expired", the token to todo or error.
 */
export async function sweepExpiredLeases(db: TokenDb, now: number, opts: { dryRun?: boolean; designDoc?: string } = {}): Promise<SweepReport> {
  const report: SweepReport = { expired: [], skipped: 0 };
  const page = 500;
  let startkey: number | undefined;
  let startkeyDocid: string | undefined;
  for (;;) {
    const res = await db.view(opts.designDoc ?? 'tokenpool', 'leases', {
      endkey: now,
      include_docs: true,
      limit: page + 1,
      ...(startkey !== undefined ? { startkey, startkey_docid: startkeyDocid } : {}),
    });
    const rows = res.rows.slice(0, page);
    for (const row of rows) {
      const t = row.doc as Token | undefined;
      if (!t || !leaseExpired(t, now)) continue;
      const entry = (x: Token): SweepEntry => ({ id: x._id, attempt: x.attempts, owner: x.lease!.owner, expired: x.lease!.expires, to: expire(x, now).status === 'error' ? 'error' : 'todo' });
      if (opts.dryRun) {
        report.expired.push(entry(t));
        continue;
      }
      let seen: SweepEntry | null = null;
      const written = await updateToken(db, t._id, (x) => {
        if (!leaseExpired(x, now)) return null;
        seen = entry(x);
        return expire(x, now);
      }, { known: t });
      if (written && seen) report.expired.push(seen);
      else report.skipped++;
    }
    if (res.rows.length <= page) break;
    const next = res.rows[page]!;
    startkey = next.key as unknown as number;
    startkeyDocid = next.id;
  }
  return report;
}
