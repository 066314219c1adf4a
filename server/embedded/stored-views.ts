/**
 * "Stored views": the front answers view queries from an index it keeps in memory. Reduced queries on
 * built-in `_count`/`_sum` views, because the engine (PouchDB) re-reduces every row on every query
 * (~15 s at 100k docs); row listings (map-only views, reduce=false), because the engine brings its own
 * index up to date inside every query, which under a stream of writes (agents claiming) costs seconds.
 * The index holds every emitted row in view order and each document's rows (so an update removes its
 * old contribution). Writes the front saw accepted are applied at once (db-writes.ts); before an
 * answer that may have missed another write, it reads the engine's `_changes` since the last sequence
 * it saw, so answers are never stale. Anything it does not reproduce exactly goes to the engine.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import { collate, type JsonValue } from './collate.js';
import { MapSandbox } from './map-sandbox.js';
import { callEngine, type Upstream } from './upstream.js';
import { DbWrites, type WrittenDoc } from './db-writes.js';

type Builtin = '_count' | '_sum';
/** The view's reduce: built-in (answered here), another one (only reduce=false answered), or none. */
type ReduceKind = Builtin | 'other' | null;

interface Row {
  key: JsonValue;
  value: JsonValue;
  id: string;
}

/** One entry of `_changes` (with include_docs), or a write the front saw. */
interface Change {
  id: string;
  deleted?: boolean;
  changes?: { rev: string }[];
  doc?: Record<string, unknown> & { _rev?: string };
}

export interface ViewQuery {
  /** the `reduce` parameter as given */
  reduce: boolean | undefined;
  includeDocs: boolean;
  group: boolean;
  groupLevel: number | undefined;
  startkey?: JsonValue;
  endkey?: JsonValue;
  key?: JsonValue;
  inclusiveEnd: boolean;
  descending: boolean;
  limit: number | undefined;
  skip: number;
}

const CHANGES_BATCH = 2000;
/** Written-through changes after which `_changes` is read in the background, so the sequence keeps up. */
const THROUGH_BEFORE_READ = 1000;
/** Written-through changes held before they are mapped anyway (they are mapped in one batch at the next answer). */
const MAX_PENDING_WRITES = 500;
/** Above this many changed documents in one read, re-sorting beats inserting row by row. */
const RESORT_THRESHOLD = 500;
const MAX_INDEXES = 64;
const MAX_MEMO = 256;
/** Per index, the documents kept for include_docs (JSON characters); beyond, they are read per answer. */
const MAX_DOC_BYTES = 64 * 1024 * 1024;
const ANSWERED_PARAMS = new Set(['reduce', 'include_docs', 'group', 'group_level', 'key', 'startkey', 'start_key', 'endkey', 'end_key', 'inclusive_end', 'descending', 'limit', 'skip', 'update']);
/** CouchDB's `update` (true, false, lazy): how stale an answer may be. The stored index is never stale, so any is met. */
const UPDATE_VALUES = new Set(['true', 'false', 'lazy']);

/**
 * The query, when every parameter is one this index answers exactly as the engine would; else null.
 * Whether it asks for rows or a reduction depends on the view too: see `mode`.
 */
export function parseViewQuery(search: URLSearchParams): ViewQuery | null {
  const one: Record<string, string> = {};
  for (const name of new Set(search.keys())) {
    if (!ANSWERED_PARAMS.has(name)) return null;
    const values = search.getAll(name);
    if (values.length !== 1) return null;
    one[name] = values[0]!;
  }
  const bool = (name: string, dflt: boolean): boolean | null => {
    const v = one[name];
    if (v === undefined) return dflt;
    return v === 'true' ? true : v === 'false' ? false : null;
  };
  const int = (name: string): number | undefined | null => {
    const v = one[name];
    if (v === undefined) return undefined;
    return /^\d{1,9}$/.test(v) ? Number(v) : null;
  };
  const json = (name: string): { v?: JsonValue } | null => {
    const v = one[name];
    if (v === undefined) return {};
    try {
      return { v: JSON.parse(v) as JsonValue };
    } catch {
      return null;
    }
  };
  if ('update' in one && !UPDATE_VALUES.has(one.update!)) return null;
  const reduce = 'reduce' in one ? bool('reduce', true) : undefined;
  const includeDocs = bool('include_docs', false);
  const group = bool('group', false);
  const inclusiveEnd = bool('inclusive_end', true);
  const descending = bool('descending', false);
  const groupLevel = int('group_level');
  const limit = int('limit');
  const skip = int('skip');
  if (reduce === null || includeDocs === null || group === null || inclusiveEnd === null || descending === null) return null;
  if (groupLevel === null || limit === null || skip === null) return null;
  // group together with group_level, or key together with a range: leave the engine's own rules to it.
  if ('group' in one && groupLevel !== undefined) return null;
  if ('startkey' in one && 'start_key' in one) return null;
  if ('endkey' in one && 'end_key' in one) return null;
  const startkey = json('startkey' in one ? 'startkey' : 'start_key');
  const endkey = json('endkey' in one ? 'endkey' : 'end_key');
  const key = json('key');
  if (!startkey || !endkey || !key) return null;
  if ('key' in key && ('v' in startkey || 'v' in endkey)) return null;
  const q: ViewQuery = { reduce, includeDocs, group, groupLevel, inclusiveEnd, descending, limit, skip: skip ?? 0 };
  if ('v' in startkey) q.startkey = startkey.v;
  if ('v' in endkey) q.endkey = endkey.v;
  if ('v' in key) q.key = key.v;
  // An empty range is an error on the engine (and CouchDB); it words that answer itself.
  if (q.startkey !== undefined && q.endkey !== undefined && collate(q.startkey, q.endkey) * (descending ? -1 : 1) > 0) return null;
  return q;
}

/** What the query asks of a view with this reduce: its rows, its reduction, or something left to the engine. */
export function queryMode(q: ViewQuery, reduce: ReduceKind): 'rows' | 'reduce' | null {
  if (q.reduce === false || (reduce === null && q.reduce === undefined)) {
    // Grouping without reducing is the engine's error to word.
    return q.group || q.groupLevel !== undefined ? null : 'rows';
  }
  if (reduce === '_count' || reduce === '_sum') return q.includeDocs ? null : 'reduce';
  return null;
}

/** The generation of a revision: 3 for "3-9a8b…". */
function revPosition(rev: string): number {
  return Number.parseInt(rev, 10) || 0;
}

function compareRows(a: Row, b: Row): number {
  return collate(a.key, b.key) || (a.id === b.id ? 0 : a.id > b.id ? 1 : -1) || collate(a.value, b.value);
}

function isSummable(v: JsonValue): boolean {
  return typeof v === 'number' || (Array.isArray(v) && v.every((x) => typeof x === 'number'));
}

/** The engine's `_sum`: numbers add; arrays of numbers add element-wise; a number adds to element 0. */
function addTo(acc: number | number[], v: number | number[]): number | number[] {
  if (typeof v === 'number') {
    if (typeof acc === 'number') return acc + v;
    acc[0]! += v;
    return acc;
  }
  const out = typeof acc === 'number' ? [acc] : acc;
  v.forEach((x, j) => {
    if (out[j] === undefined) out.push(x);
    else out[j]! += x;
  });
  return out;
}

/** A map-only answer as the engine gives it (PouchDB: `offset` is the skip). */
export interface RowsAnswer {
  total_rows: number;
  offset: number;
  rows: { id: string; key: JsonValue; value: JsonValue; doc?: unknown }[];
}

interface ReduceAnswer {
  rows: { key: JsonValue; value: JsonValue }[];
}

class ViewIndex {
  private rows: Row[] = [];
  private readonly byDoc = new Map<string, Row[]>();
  private seq: string | number = 0;
  /** _sum rows whose value the builtin refuses: the engine answers with its error then. */
  private unsummable = 0;
  /** Answers already computed, valid until the rows change (dashboards repeat the same queries). */
  private readonly answers = new Map<string, ReduceAnswer | RowsAnswer>();
  private running: Promise<void> | null = null;
  /** the opaque-write count when the read of `_changes` in flight began */
  private runningFrom = -1;
  private queued: Promise<void> | null = null;
  /** The opaque- and written-through-write counts when the last completed read of `_changes` began. */
  private synced = { opaque: -1, through: 0 };
  /** The revision each document's rows come from: a change older than that (read before a write the front saw) is skipped. */
  private readonly revs = new Map<string, string>();
  /** Written-through changes not mapped yet: mapped in one batch at the next answer, not one by one. */
  private pendingWrites = new Map<string, Change>();
  /** The changes handed to apply() so far, applied in order. */
  private applying: Promise<void> = Promise.resolve();
  /** Set when applying changes failed (the map function failed or timed out): the index is unusable. */
  private failure: Error | null = null;
  /**
   * The documents that have rows, as JSON text, kept once a query asked for include_docs (until then
   * null): they come with the changes anyway, so listings with documents cost the engine nothing more.
   */
  private docs: Map<string, string> | null = null;
  private docBytes = 0;
  /** Set when the design document changed under us: the index must be dropped. */
  stale = false;

  constructor(
    private readonly up: Upstream,
    private readonly adminAuth: string,
    private readonly db: string,
    private readonly ddocId: string,
    readonly ddocRev: string,
    readonly generation: number,
    readonly reduce: ReduceKind,
    private readonly sandbox: MapSandbox,
    private readonly writes: DbWrites,
  ) {}

  close(): void {
    this.sandbox.close();
  }

  /** Whether a reduction computed here equals the engine's (rows always do). */
  get reducible(): boolean {
    return this.unsummable === 0;
  }

  /**
   * Brings the index up to every write completed so far. Nothing to read when every write since the
   * last read of `_changes` was written through; a read already running covers the writes completed
   * before it began, else a fresh one follows it.
   */
  async catchUp(): Promise<void> {
    await this.flushWrites();
    const { opaque, through } = this.writes;
    if (this.synced.opaque === opaque) {
      if (through - this.synced.through >= THROUGH_BEFORE_READ && !this.running) void this.startReading().catch(() => undefined);
      return;
    }
    if (!this.running) return this.startReading();
    if (this.runningFrom === opaque) return this.running;
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.catchUp();
      });
    return this.queued;
  }

  private startReading(): Promise<void> {
    const from = { opaque: this.writes.opaque, through: this.writes.through };
    this.runningFrom = from.opaque;
    this.running = this.readChanges()
      .then(() => {
        this.synced = from;
      })
      .finally(() => (this.running = null));
    return this.running;
  }

  /** A write the front saw the engine accept: applied before the next answer, without reading `_changes`. */
  applyWritten(w: WrittenDoc): void {
    // Later writes of a document come later: the last one is what it is now.
    this.pendingWrites.delete(w.id);
    this.pendingWrites.set(w.id, { id: w.id, deleted: w.deleted, changes: [{ rev: w.rev }], doc: w.doc });
    // A failure is kept in `failure` and reported by the next catchUp.
    if (this.pendingWrites.size >= MAX_PENDING_WRITES) this.flushWrites().catch(() => undefined);
  }

  /** Maps the pending written-through changes; settles when every change handed over so far is applied. */
  private flushWrites(): Promise<void> {
    const batch = [...this.pendingWrites.values()];
    this.pendingWrites = new Map();
    return this.apply(batch, true);
  }

  private async readChanges(): Promise<void> {
    for (;;) {
      const path = `/${encodeURIComponent(this.db)}/_changes?include_docs=true&limit=${CHANGES_BATCH}&since=${encodeURIComponent(String(this.seq))}`;
      const reply = await callEngine(this.up, 'GET', path, { authorization: this.adminAuth });
      if (reply.status !== 200) throw new Error(`engine answered ${reply.status} to ${path.split('?')[0]}`);
      const feed = JSON.parse(reply.body) as { results: Change[]; last_seq: string | number };
      await this.apply(feed.results, false);
      if (this.stale) return;
      this.seq = feed.last_seq;
      if (feed.results.length < CHANGES_BATCH) return;
    }
  }

  /**
   * Applies changes after those handed over before (mapping is asynchronous: on the map thread);
   * rejects once any application failed, as the rows may then miss a change.
   */
  private apply(changes: Change[], written: boolean): Promise<void> {
    if (changes.length > 0) {
      this.applying = this.applying.then(() => this.applyNow(changes, written)).catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      });
    }
    return this.applying.then(() => {
      if (this.failure) throw this.failure;
    });
  }

  private async applyNow(changes: Change[], written: boolean): Promise<void> {
    if (this.failure || this.stale) return;
    const results = changes.filter((c) => this.isNewer(c, written));
    const mapped: { id: string; doc: string }[] = [];
    const changed = new Set<string>();
    for (const change of results) {
      if (change.id === this.ddocId && change.doc?._rev !== this.ddocRev) {
        this.stale = true;
        return;
      }
      changed.add(change.id);
      // Design documents are not indexed; deleted documents only lose their rows.
      if (!change.deleted && change.doc && !change.id.startsWith('_design/')) mapped.push({ id: change.id, doc: JSON.stringify(change.doc) });
    }
    const emitted = await this.sandbox.run(mapped.map((m) => m.doc));
    // From here on the rows change (no await below): answers memoised meanwhile are out of date.
    if (results.length > 0) this.answers.clear();
    const fresh = new Map<string, Row[]>();
    mapped.forEach((m, i) => {
      fresh.set(
        m.id,
        emitted[i]!.map((text) => {
          const [key, value] = JSON.parse(text) as [JsonValue, JsonValue];
          return { key, value, id: m.id };
        }),
      );
    });
    if (changed.size > RESORT_THRESHOLD) {
      this.rows = this.rows.filter((r) => !changed.has(r.id));
      for (const id of changed) this.forget(this.byDoc.get(id) ?? [], false);
      for (const [id, rows] of fresh) this.remember(id, rows, false);
      this.rows.sort(compareRows);
    } else {
      for (const id of changed) this.forget(this.byDoc.get(id) ?? [], true);
      for (const [id, rows] of fresh) this.remember(id, rows, true);
    }
    for (const id of changed) if (!fresh.has(id)) this.byDoc.delete(id);
    if (this.docs) {
      for (const id of changed) this.dropDoc(id);
      mapped.forEach((m) => {
        if (fresh.get(m.id)!.length > 0) this.keepDoc(m.id, m.doc);
      });
    }
  }

  /**
   * Whether a change is newer than what the rows show, and if so, remembers its revision. A written-
   * through change must be strictly newer; one from `_changes` also wins a tie, the engine having chosen
   * it among conflicting revisions.
   */
  private isNewer(c: Change, written: boolean): boolean {
    const rev = c.doc?._rev ?? c.changes?.[0]?.rev;
    if (rev === undefined) return true;
    const known = this.revs.get(c.id);
    if (known !== undefined) {
      if (known === rev) return false;
      const delta = revPosition(rev) - revPosition(known);
      if (delta < 0 || (delta === 0 && written)) return false;
    }
    this.revs.set(c.id, rev);
    return true;
  }

  private keepDoc(id: string, text: string): void {
    // Over the budget, documents are read from the engine per answer instead.
    if (this.docBytes + text.length > MAX_DOC_BYTES) return;
    this.docs!.set(id, text);
    this.docBytes += text.length;
  }

  private dropDoc(id: string): void {
    const old = this.docs!.get(id);
    if (old === undefined) return;
    this.docs!.delete(id);
    this.docBytes -= old.length;
  }

  /** From now on, documents that have rows are kept as their changes arrive. */
  keepDocs(): Map<string, string> {
    return (this.docs ??= new Map());
  }

  /**
   * The current documents of these ids as far as the index holds them (all of them, once warm);
   * starts keeping documents at the first call.
   */
  storedDocs(ids: string[]): Map<string, string> {
    const docs = this.keepDocs();
    const out = new Map<string, string>();
    for (const id of ids) {
      const text = docs.get(id);
      if (text !== undefined) out.set(id, text);
    }
    return out;
  }

  /**
   * Documents read from the engine after the rows: kept when the index has rows for them and no
   * version yet (a version from the changes is as new or newer; a later change replaces this one).
   */
  adoptDocs(fetched: Map<string, string>): void {
    if (!this.docs) return;
    for (const [id, text] of fetched) {
      if (!this.docs.has(id) && (this.byDoc.get(id)?.length ?? 0) > 0) this.keepDoc(id, text);
    }
  }

  private forget(rows: Row[], splice: boolean): void {
    for (const row of rows) {
      if (this.reduce === '_sum' && !isSummable(row.value)) this.unsummable--;
      if (splice) this.rows.splice(this.lowerBound(row, compareRows), 1);
    }
  }

  private remember(id: string, rows: Row[], splice: boolean): void {
    this.byDoc.set(id, rows);
    for (const row of rows) {
      if (this.reduce === '_sum' && !isSummable(row.value)) this.unsummable++;
      if (splice) this.rows.splice(this.lowerBound(row, compareRows), 0, row);
      else this.rows.push(row);
    }
  }

  /** First position whose row is not below `probe`. */
  private lowerBound<T>(probe: T, cmp: (row: Row, probe: T) => number): number {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp(this.rows[mid]!, probe) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private keyLowerBound(key: JsonValue): number {
    return this.lowerBound(key, (row, k) => collate(row.key, k));
  }

  /** First position whose key is above `key`. */
  private keyUpperBound(key: JsonValue): number {
    return this.lowerBound(key, (row, k) => (collate(row.key, k) <= 0 ? -1 : 1));
  }

  query(q: ViewQuery, mode: 'rows' | 'reduce'): ReduceAnswer | RowsAnswer {
    // Documents are fetched per answer; the rows alone are memoised.
    const memo = JSON.stringify({ ...q, includeDocs: false, mode });
    let answer = this.answers.get(memo);
    if (!answer) {
      answer = mode === 'rows' ? this.listRows(q) : this.reduceRows(q);
      if (this.answers.size >= MAX_MEMO) this.answers.clear();
      this.answers.set(memo, answer);
    }
    return answer;
  }

  /** Positions [lo, hi) of the rows the query's key range selects, in ascending order. */
  private range(q: ViewQuery): [number, number] {
    if (q.key !== undefined) return [this.keyLowerBound(q.key), this.keyUpperBound(q.key)];
    let lo = 0;
    let hi = this.rows.length;
    const low = q.descending ? q.endkey : q.startkey;
    const high = q.descending ? q.startkey : q.endkey;
    // The end key is the low bound when descending; inclusive_end applies to whichever it is.
    if (low !== undefined) lo = q.descending && !q.inclusiveEnd ? this.keyUpperBound(low) : this.keyLowerBound(low);
    if (high !== undefined) hi = !q.descending && !q.inclusiveEnd ? this.keyLowerBound(high) : this.keyUpperBound(high);
    return [lo, Math.max(lo, hi)];
  }

  private listRows(q: ViewQuery): RowsAnswer {
    const [lo, hi] = this.range(q);
    const count = Math.max(0, Math.min(hi - lo - q.skip, q.limit ?? Infinity));
    const rows: RowsAnswer['rows'] = [];
    for (let k = 0; k < count; k++) {
      const row = this.rows[q.descending ? hi - 1 - q.skip - k : lo + q.skip + k]!;
      rows.push({ id: row.id, key: row.key, value: row.value });
    }
    return { total_rows: this.rows.length, offset: q.skip, rows };
  }

  private reduceRows(q: ViewQuery): ReduceAnswer {
    const [lo, hi] = this.range(q);
    const level = q.groupLevel === 0 ? undefined : q.groupLevel;
    const grouped = q.group || level !== undefined;
    const groups: { key: JsonValue; value: number | number[] }[] = [];
    const visit = (row: Row) => {
      let key: JsonValue = null;
      if (grouped) key = Array.isArray(row.key) && level !== undefined ? row.key.slice(0, level) : row.key;
      let last = groups[groups.length - 1];
      if (!last || collate(last.key, key) !== 0) {
        last = { key, value: 0 };
        groups.push(last);
      }
      last.value = this.reduce === '_count' ? (last.value as number) + 1 : addTo(last.value, row.value as number | number[]);
    };
    if (q.descending) for (let i = hi - 1; i >= lo; i--) visit(this.rows[i]!);
    else for (let i = lo; i < hi; i++) visit(this.rows[i]!);
    const end = q.limit === undefined ? undefined : q.skip + q.limit;
    return { rows: groups.slice(q.skip, end).map((g) => ({ key: g.key, value: g.value })) };
  }
}

interface DesignDoc {
  _id: string;
  _rev: string;
  language?: string;
  options?: unknown;
  views?: Record<string, { map?: unknown; reduce?: unknown }>;
}

/** A view whose index could not be built: the engine answers it for a while (or until the design doc changes). */
interface Failed {
  failedRev: string;
  generation: number;
  until: number;
}

const RETRY_FAILED_MS = 60_000;
/** How long a caller's successful read of a database is trusted (the front caches _security 5 s too). */
const READER_MS = 5_000;
const MAX_READERS = 10_000;

/** An answer from a stored index, and which kind it is (for the response header). */
export interface StoredAnswer {
  kind: 'rows' | 'reduce';
  /** the memoised answer itself, unless `withDocs` */
  body: ReduceAnswer | RowsAnswer;
  /** rows with their documents, assembled for this request */
  withDocs?: true;
}

/** Every stored view index of the server, keyed by database, design document and view. */
export class StoredViews {
  private readonly indexes = new Map<string, ViewIndex | Failed>();
  /** Design documents as last read; an index that sees its design document change drops the copy. */
  private readonly ddocs = new Map<string, { ddoc: DesignDoc; generation: number }>();
  /** Callers (by credential) the engine let read a database lately, until when. */
  private readonly readers = new Map<string, number>();
  private readonly writes = new Map<string, DbWrites>();

  constructor(
    private readonly up: Upstream,
    private readonly adminAuth: string,
    private readonly generation: () => number,
    private readonly log: Logger,
  ) {}

  /** A database was created or deleted through the front: its indexes describe nothing any more. */
  /** A single-document write the engine accepted, its stored document known: every index of the database takes it now. */
  wrote(db: string, w: WrittenDoc): void {
    this.writesOf(db).through++;
    for (const index of this.indexesOf(db)) index.applyWritten(w);
  }

  /** A write completed whose effect the front cannot tell: indexes read `_changes` before their next answer. */
  wroteOpaque(db: string): void {
    this.writesOf(db).opaque++;
  }

  private dropIndex(key: string): void {
    const index = this.indexes.get(key);
    if (index instanceof ViewIndex) index.close();
    this.indexes.delete(key);
  }

  private writesOf(db: string): DbWrites {
    let w = this.writes.get(db);
    if (!w) this.writes.set(db, (w = new DbWrites()));
    return w;
  }

  private *indexesOf(db: string): Iterable<ViewIndex> {
    const prefix = `${db}\u0000`;
    for (const [key, index] of this.indexes) if (key.startsWith(prefix) && index instanceof ViewIndex) yield index;
  }

  forgetDb(db: string): void {
    this.writes.delete(db);
    for (const key of [...this.indexes.keys()]) if (key.startsWith(`${db}\u0000`)) this.dropIndex(key);
    for (const key of this.ddocs.keys()) if (key.startsWith(`${db}\u0000`)) this.ddocs.delete(key);
    this.forgetReaders(db);
  }

  /** The database's _security changed: who may read it is asked of the engine again. */
  forgetReaders(db: string): void {
    for (const key of this.readers.keys()) if (key.endsWith(`\u0000${db}`)) this.readers.delete(key);
  }

  /**
   * The design document, read with the caller's credentials unless this caller read from the
   * database within READER_MS (the front's own session and _security caches are as old); null when
   * the engine refuses it (the engine then answers the query itself, with its error).
   */
  private async designDoc(db: string, ddocName: string, identity: Record<string, string>, generation: number): Promise<DesignDoc | null> {
    const key = `${db}\u0000${ddocName}`;
    const reader = `${createHash('sha256').update(identity.authorization ?? identity.cookie ?? '').digest('hex')}\u0000${db}`;
    const cached = this.ddocs.get(key);
    if (cached && cached.generation === generation && (this.readers.get(reader) ?? 0) > Date.now()) return cached.ddoc;
    const reply = await callEngine(this.up, 'GET', `/${encodeURIComponent(db)}/_design/${encodeURIComponent(ddocName)}`, identity);
    if (reply.status !== 200) return null;
    const ddoc = JSON.parse(reply.body) as DesignDoc;
    if (this.ddocs.size >= MAX_INDEXES) this.ddocs.delete(this.ddocs.keys().next().value!);
    this.ddocs.set(key, { ddoc, generation });
    if (this.readers.size >= MAX_READERS) this.readers.clear();
    this.readers.set(reader, Date.now() + READER_MS);
    return ddoc;
  }

  /**
   * The answer to a view query, or null when the engine must answer it. The caller's own credentials
   * read the design document (and the documents for include_docs), so access control stays the engine's.
   */
  async answer(db: string, ddocName: string, view: string, search: URLSearchParams, identity: Record<string, string>): Promise<StoredAnswer | null> {
    const q = parseViewQuery(search);
    if (!q) return null;
    const ddocId = `_design/${ddocName}`;
    const generation = this.generation();
    const ddoc = await this.designDoc(db, ddocName, identity, generation);
    if (!ddoc) return null;
    const def = ddoc.views?.[view];
    // The stored index sees documents as `_changes` gives them, without `_conflicts`: such a view is the engine's.
    if (!def || typeof def.map !== 'string' || def.map.includes('_conflicts')) return null;
    if ((ddoc.language ?? 'javascript') !== 'javascript' || ddoc.options !== undefined) return null;
    const reduceSource = typeof def.reduce === 'string' ? def.reduce.trim() : undefined;
    const reduce: ReduceKind = def.reduce === undefined ? null : reduceSource === '_count' || reduceSource === '_sum' ? reduceSource : 'other';
    const mode = queryMode(q, reduce);
    if (!mode) return null;

    const key = `${db}\u0000${ddocName}\u0000${view}`;
    let entry = this.indexes.get(key);
    const expired = entry !== undefined && 'failedRev' in entry && entry.until < Date.now();
    if (entry && (expired || ('failedRev' in entry ? entry.failedRev : entry.ddocRev) !== ddoc._rev || entry.generation !== generation)) {
      this.dropIndex(key);
      entry = undefined;
    }
    if (entry && 'failedRev' in entry) return null;
    let index = entry;
    if (!index) {
      index = new ViewIndex(this.up, this.adminAuth, db, ddocId, ddoc._rev, generation, reduce, new MapSandbox(def.map), this.writesOf(db));
      // Agents list with documents from their first query on: keep them from the build, which reads them anyway.
      if (mode === 'rows' && q.includeDocs) index.keepDocs();
      if (this.indexes.size >= MAX_INDEXES) this.dropIndex(this.indexes.keys().next().value!);
      this.indexes.set(key, index);
    }
    try {
      await index.catchUp();
    } catch (err) {
      // A map source that is no function, or that throws out of the sandbox or never ends.
      if (this.indexes.get(key) === index) {
        this.dropIndex(key);
        this.indexes.set(key, { failedRev: ddoc._rev, generation, until: Date.now() + RETRY_FAILED_MS });
      }
      this.log.warn({ db, view: `${ddocId}/${view}`, err: String(err) }, 'stored view failed; the engine answers');
      return null;
    }
    if (index.stale) {
      if (this.indexes.get(key) === index) this.dropIndex(key);
      this.ddocs.delete(`${db}\u0000${ddocName}`);
      return null;
    }
    if (mode === 'reduce' && !index.reducible) return null;
    // Keep recently used indexes last so that eviction takes the least recently used.
    this.indexes.delete(key);
    this.indexes.set(key, index);
    const body = index.query(q, mode);
    if (mode === 'rows' && q.includeDocs) {
      const withDocs = await this.withDocs(db, index, body as RowsAnswer, identity);
      return withDocs ? { kind: mode, body: withDocs, withDocs: true } : null;
    }
    return { kind: mode, body };
  }

  /**
   * The rows with their documents: those the index keeps, the rest read from the engine with the
   * caller's credentials (so a document may be newer than its row, as in CouchDB). A value with an
   * `_id` names the document to include (linked documents), as the engine does.
   */
  private async withDocs(db: string, index: ViewIndex, answer: RowsAnswer, identity: Record<string, string>): Promise<RowsAnswer | null> {
    if (answer.rows.length === 0) return answer;
    const docIdOf = (row: RowsAnswer['rows'][number]): string => {
      const v = row.value;
      return v !== null && typeof v === 'object' && !Array.isArray(v) && typeof v._id === 'string' && v._id ? v._id : row.id;
    };
    const ids = [...new Set(answer.rows.map(docIdOf))];
    const docs = index.storedDocs(ids);
    const missing = ids.filter((id) => !docs.has(id));
    if (missing.length > 0) {
      const reply = await callEngine(this.up, 'POST', `/${encodeURIComponent(db)}/_all_docs?include_docs=true`, identity, JSON.stringify({ keys: missing }));
      if (reply.status !== 200) return null;
      const fetched = new Map<string, string>();
      for (const r of (JSON.parse(reply.body) as { rows: { key: string; doc?: unknown }[] }).rows) if (r.doc) fetched.set(r.key, JSON.stringify(r.doc));
      index.adoptDocs(fetched);
      for (const [id, text] of fetched) docs.set(id, text);
    }
    return {
      ...answer,
      rows: answer.rows.map((row) => {
        const text = docs.get(docIdOf(row));
        return text === undefined ? { ...row } : { ...row, doc: JSON.parse(text) as unknown };
      }),
    };
  }
}
