/**
 * Finding and taking work. A claimer reads a window of claimable rows (with their documents) at a
 * random offset and tries them in its own random order, so that many agents do not all fight over the
 * first row. Windows are kept briefly (0.25 s, for an agent taking several tokens at once) and dropped
 * at a 409: the query is cheap (a CouchDB view, or the embedded server's stored index), while a stale
 * candidate costs a write that fails. Tokens whose lease ran out are
 * candidates too. Every document is re-checked before the compare-and-swap write.
 */
import type { Logger } from '../server/log.js';
import { claim, claimability, expire, fence, writeClaim, type Claimant, type TokenDb } from '../server/lease.js';
import { describeProblems, EXIT, isPicasToken, nowSeconds, validateToken, type Token } from '../server/token.js';
import { TOKENPOOL_DDOC } from '../server/design.js';
import { httpStatus } from '../server/db-errors.js';
import type { Copies } from '../server/branches.js';

/** Which tokens an agent takes; at most one of view and selector, step and obsid narrow the default views. */
export interface ClaimSource {
  step?: string;
  obsid?: string;
  /** "design/view" whose rows are token ids, e.g. Monitor/todo */
  view?: string;
  /** Mango selector ANDed with "claimable" */
  selector?: Record<string, unknown>;
}

export interface ClaimerOptions {
  db: TokenDb;
  who: Claimant;
  leaseSeconds: number;
  source?: ClaimSource;
  /** rows read per query */
  window?: number;
  /** the window starts at a random offset among this many first claimable rows */
  spread?: number;
  /** re-query after this many milliseconds even when candidates are left */
  maxAgeMs?: number;
  /** check each claim on every copy (needed on a CouchDB cluster with n > 1): lease.ts, fence */
  copies?: Copies | null;
  log?: Logger;
  random?: () => number;
}

export interface Claimed {
  token: Token;
  claimId: string;
}

export interface ClaimStats {
  claims: number;
  conflicts: number;
  queries: number;
  expiredTaken: number;
  fencesLost: number;
  malformed: number;
  /** PiCaS-format tokens met (e.g. with --view Monitor/todo): left alone, `tokens adopt` converts them */
  picas: number;
}

type Doc = Record<string, unknown> & { _id: string };

// Fresh windows per claim before reporting nothing claimable; each round is one query and usually one write.
const MAX_ROUNDS = 50;

export class Claimer {
  readonly stats: ClaimStats = { claims: 0, conflicts: 0, queries: 0, expiredTaken: 0, fencesLost: 0, malformed: 0, picas: 0 };
  private candidates: Doc[] = [];
  private fetchedAt = 0;
  /** Malformed tokens we could not mark as error, and PiCaS-format tokens: not tried again by this agent. */
  private readonly refused = new Set<string>();
  private readonly window: number;
  private readonly spread: number;
  private readonly maxAgeMs: number;
  private readonly expiredEveryMs: number;
  private expiredCheckedAt = 0;
  /** claimable rows in the view at the last query; unknown at first, so the first window starts anywhere in the spread */
  private claimableRows = Number.POSITIVE_INFINITY;
  private readonly random: () => number;

  constructor(private readonly opts: ClaimerOptions) {
    this.window = opts.window ?? 10;
    this.spread = opts.spread ?? 500;
    this.maxAgeMs = opts.maxAgeMs ?? 250;
    // Leases run out at the earliest a third of a lease after the last heartbeat: no need to look more often.
    this.expiredEveryMs = Math.min(30_000, (opts.leaseSeconds * 1000) / 3);
    this.random = opts.random ?? Math.random;
  }

  /** Claims one token that `accept` agrees to run; null when nothing claimable is left for us. */
  async next(accept: (t: Token) => boolean = () => true): Promise<Claimed | null> {
    if (this.candidates.length > 0 && Date.now() - this.fetchedAt <= this.maxAgeMs) {
      while (this.candidates.length > 0) {
        const got = await this.tryCandidate(this.candidates.pop()!, accept);
        if (got) return got;
      }
    }
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const usable = await this.refill(accept);
      if (usable === 0) return null;
      while (this.candidates.length > 0) {
        const got = await this.tryCandidate(this.candidates.pop()!, accept);
        if (got) return got;
      }
    }
    return null;
  }

  /** Forgets the cached window (e.g. after an outage). */
  reset(): void {
    this.candidates = [];
  }

  /**
   * Reads fresh candidates, in random order, expired leases first. The window starts at a random
   * offset within the first `spread` claimable rows (the view's total_rows tells how many there
   * are), so that concurrent agents mostly read different windows and rarely race for one token.
   * Returns how many could be ours.
   */
  private async refill(accept: (t: Token) => boolean): Promise<number> {
    const now = nowSeconds();
    const lookForExpired = Date.now() - this.expiredCheckedAt >= this.expiredEveryMs;
    const [expired, fresh] = await Promise.all([lookForExpired ? this.queryExpired(now) : Promise.resolve([]), this.queryClaimable(now)]);
    if (lookForExpired) this.expiredCheckedAt = Date.now();
    this.stats.queries++;
    shuffle(fresh, this.random);
    shuffle(expired, this.random);
    // Candidates are taken from the end: highest priority first, in random order among equals (expired leases first).
    const all = [...fresh, ...expired].filter((d) => !this.refused.has(d._id)).sort((a, b) => priorityOf(a) - priorityOf(b));
    // Malformed documents stay in, so that tryCandidate marks them.
    this.candidates = all.filter((d) => !looksLikeToken(d) || (claimability(d as unknown as Token, now) !== null && accept(d as unknown as Token)));
    this.fetchedAt = Date.now();
    if (this.candidates.length === 0 && !lookForExpired) {
      // Nothing fresh for us: an idle agent must still see leases that ran out.
      this.expiredCheckedAt = 0;
      return this.refill(accept);
    }
    return this.candidates.length;
  }

  private nextSkip(): number {
    const room = Math.min(this.spread, this.claimableRows - this.window);
    return room > 0 ? Math.floor(this.random() * room) : 0;
  }

  private async queryClaimable(now: number): Promise<Doc[]> {
    const { db, source = {} } = this.opts;
    const limit = this.window;
    if (source.selector) {
      const selector = {
        $and: [{ type: 'token' }, { $or: [{ status: 'todo', lock: 0, done: 0 }, { 'lease.expires': { $lte: now } }] }, source.selector],
      };
      const res = await db.find({ selector, limit });
      return res.docs as unknown as Doc[];
    }
    let design = TOKENPOOL_DDOC;
    let view = 'claimable';
    let range: Record<string, unknown> = {};
    if (source.view) {
      [design, view] = splitView(source.view);
    } else if (source.obsid) {
      view = 'claimable_by_obsid';
      const prefix = source.step ? [source.obsid, source.step] : [source.obsid];
      range = { startkey: prefix, endkey: [...prefix, {}] };
    } else if (source.step) {
      view = 'claimable_by_step';
      range = { startkey: [source.step], endkey: [source.step, {}] };
    }
    // total_rows counts the whole view; a key range makes it an upper bound, so only the full view gets an offset.
    const skip = Object.keys(range).length === 0 && !source.view ? this.nextSkip() : 0;
    // The most urgent row, asked alongside: a window at an offset must not pass over more urgent work.
    const head = skip > 0 ? db.view(design, view, { limit: 1, reduce: false, update: 'lazy' } as never).catch(() => null) : null;
    // The index as it is (Apache CouchDB brings it up to date after answering): every candidate is
    // re-read and written with compare-and-swap anyway, and a query that waits for the index of a
    // pool that changes with every claim waits for the map functions of every view in the design document.
    let res = await db.view(design, view, { ...range, limit, skip, reduce: false, update: 'lazy' } as never);
    // Nothing in the index as it was: ask the up-to-date index before saying there is no work.
    if (res.rows.length === 0) res = await db.view(design, view, { ...range, limit, skip, reduce: false });
    if (typeof res.total_rows === 'number') this.claimableRows = res.total_rows;
    if (res.rows.length === 0 && skip > 0) {
      // Past the end: fewer rows than we guessed. Another offset within the rows there are, not the first row
      // (where every agent starting with this guess would meet).
      const again = this.nextSkip();
      res = await db.view(design, view, { ...range, limit, skip: again, reduce: false });
      // Nothing there either (the view shrank meanwhile): the first rows, so that work is never missed.
      if (res.rows.length === 0 && again > 0) res = await db.view(design, view, { ...range, limit, reduce: false });
      if (typeof res.total_rows === 'number') this.claimableRows = res.total_rows;
    }
    const docs = await this.documents(res.rows.map((r) => r.id));
    const top = ((await head)?.rows[0]?.key as unknown as unknown[] | undefined)?.[0];
    const urgentHere = (d: Doc) => looksLikeToken(d) && claimability(d as unknown as Token, now) !== null && -priorityOf(d) <= (top as number);
    const lessUrgent = res.rows.some((r) => ((r.key as unknown as unknown[])[0] as number) > (top as number));
    if (typeof top === 'number' && lessUrgent && !docs.some(urgentHere)) {
      // Keys start with -priority: the offset passed over more urgent work than is left in this window
      // (few tokens of the highest priority, or those in the window taken). The first rows hold it;
      // when every row has the top priority, agents stay spread.
      res = await db.view(design, view, { limit, reduce: false, update: 'lazy' } as never);
      return this.documents(res.rows.map((r) => r.id));
    }
    return docs;
  }

  /**
   * The window's documents, read by id. Apache CouchDB reads the documents of skipped rows too when a
   * view query has include_docs and skip (95 ms against 4 ms ids-only for a window at a random offset
   * among 1,000 rows, bench:dispatch), so rows come without documents and the documents in one request.
   */
  private async documents(ids: string[]): Promise<Doc[]> {
    if (ids.length === 0) return [];
    const res = await this.opts.db.fetch({ keys: ids });
    return res.rows.flatMap((r) => ('doc' in r && r.doc ? [r.doc as unknown as Doc] : []));
  }

  private async queryExpired(now: number): Promise<Doc[]> {
    const { db, source = {} } = this.opts;
    if (source.selector) return []; // the selector query covers expired leases
    const res = await db.view(TOKENPOOL_DDOC, 'leases', { endkey: now, include_docs: true, limit: this.window });
    return res.rows
      .map((r) => r.doc as unknown as Doc)
      .filter((d): d is Doc => !!d && (!source.step || d.step === source.step) && (!source.obsid || d.obsid === source.obsid));
  }

  private async tryCandidate(doc: Doc, accept: (t: Token) => boolean): Promise<Claimed | null> {
    const { db, who, leaseSeconds, log } = this.opts;
    if (this.refused.has(doc._id)) return null;
    if (isPicasToken(doc)) {
      // Not malformed: PiCaS's, and a stock PiCaS worker may take it. Said once, not per token.
      this.refused.add(doc._id);
      if (this.stats.picas++ === 0) {
        log?.warn(
          { token: doc._id },
          'PiCaS-format token (no tokenpool fields) left alone; tokenpool agents run tokenpool tokens: convert PiCaS tokens with `tokenpool tokens adopt`, then run the agent without --view',
        );
      }
      return null;
    }
    const checked = validateToken(doc);
    if (!checked.ok) {
      await this.markMalformed(doc, describeProblems(checked.problems));
      return null;
    }
    // Written back as read: the schema drops unknown nested fields, the pool must not lose them.
    const token = doc as unknown as Token;
    const now = nowSeconds();
    const state = claimability(token, now);
    if (!state || !accept(token)) return null;
    let base = token;
    if (state === 'expired') {
      base = expire(token, now);
      if (base.status !== 'todo') {
        // Out of attempts: record the error; nothing to claim.
        const wrote = await writeClaim(db, base);
        if (wrote) log?.warn({ token: token._id, attempt: token.attempts, reason: base.reason }, 'lease expired for the last time: token to error');
        return null;
      }
    }
    const claimed = claim(base, who, leaseSeconds, now);
    const written = await writeClaim(db, claimed);
    if (!written) {
      this.stats.conflicts++;
      // Someone was faster: the rest of the window is likely out of date too, and a fresh one is cheap.
      this.candidates = [];
      return null;
    }
    if (this.opts.copies && !(await fence(db, written, this.opts.copies))) {
      log?.info({ token: token._id, claim_id: written.lease!.claim_id }, 'claim lost at the fence');
      this.stats.fencesLost++;
      this.stats.conflicts++;
      return null;
    }
    this.stats.claims++;
    if (state === 'expired') {
      this.stats.expiredTaken++;
      log?.info({ token: token._id, attempt: written.attempts, previous: token.lease?.owner }, 'reclaimed a token whose lease expired');
    }
    return { token: written, claimId: written.lease!.claim_id };
  }

  /** A token agents cannot read: mark it error naming the field, so that a person can fix it. */
  private async markMalformed(doc: Doc, problems: string): Promise<void> {
    const { db, log } = this.opts;
    const now = nowSeconds();
    this.stats.malformed++;
    this.refused.add(doc._id);
    const lock = typeof doc.lock === 'number' && doc.lock > 0 ? doc.lock : now;
    const marked = { ...doc, status: 'error', lock, done: now, exit_code: EXIT.malformedToken, reason: `malformed token: ${problems}`, lease: null, updated: now };
    try {
      await db.insert(marked as unknown as Token);
      log?.error({ token: doc._id, reason: marked.reason }, 'malformed token marked as error');
    } catch (err) {
      if (httpStatus(err) === 409) return; // someone changed it meanwhile
      log?.error({ token: doc._id, problems, err: String((err as Error).message ?? err) }, 'malformed token could not be marked as error; skipping it');
    }
  }
}

/** Cheap shape check before the full validation in tryCandidate. */
function looksLikeToken(d: Doc): boolean {
  return typeof d.status === 'string' && typeof d.lock === 'number' && typeof d.done === 'number' && (d.lease === null || typeof d.lease === 'object') && typeof d.requirements === 'object' && d.requirements !== null;
}

function splitView(name: string): [string, string] {
  const m = /^(?:_design\/)?([^/]+)\/(?:_view\/)?([^/]+)$/.exec(name);
  if (!m) throw new Error(`view must be "design/view", e.g. Monitor/todo: ${name}`);
  return [m[1]!, m[2]!];
}

/** A token's priority as the claim views order it (PiCaS-style documents may lack one). */
function priorityOf(d: Doc): number {
  return typeof d.priority === 'number' ? d.priority : 0;
}

function shuffle<T>(a: T[], random: () => number): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}
