/**
 * Two reads of the engine (PouchDB 7 on LevelDB or memdown) made cheap, with the same answers:
 *
 * - `_all_docs` with `keys`: PouchDB answers each key with a range scan of its own (a LevelDB
 *   iterator and a stream per key), ~0.2 ms a key; a point read of the document does the same work
 *   for a fraction. Deleted documents, and anything else the point read does not answer exactly,
 *   take PouchDB's own path.
 * - the design documents' listing that the engine's validation (pouchdb-validation) reads before
 *   *each* document written: a `_bulk_docs` of 200 documents read and parsed every design document
 *   200 times. One listing serves every reader that saw the same update sequence: no write, design
 *   documents included, came in between.
 *
 * Both wrap the storage adapter's internal `_allDocs`, which every route of the engine ends in.
 */

type Callback<T> = (err: unknown, result?: T) => void;

interface AllDocsOptions {
  keys?: unknown[];
  include_docs?: boolean;
  startkey?: unknown;
  endkey?: unknown;
  skip?: number;
  [option: string]: unknown;
}

interface Row {
  key: unknown;
  id?: string;
  value?: { rev: string; deleted?: boolean };
  doc?: Record<string, unknown> | null;
  error?: string;
}

interface AllDocsResult {
  total_rows: number;
  offset?: number;
  rows: Row[];
}

/** What a storage adapter (pouchdb-adapter-leveldb-core) defines on the database object. */
interface AdapterApi {
  /** answers through the callback, or (a keys query) returns a promise instead */
  _allDocs(opts: AllDocsOptions, callback: Callback<AllDocsResult>): Promise<AllDocsResult> | undefined;
  _get(id: string, opts: object, callback: Callback<{ doc: Record<string, unknown> & { _rev: string } }>): void;
  _info(callback: Callback<{ doc_count: number; update_seq: number | string }>): void;
}

type Adapter = ((this: AdapterApi, opts: unknown, callback: unknown) => void) & Record<string, unknown>;

/** Options a keys query may carry and still be answered by point reads (the rest: PouchDB's own path). */
const POINT_READ_OPTIONS = new Set(['keys', 'include_docs', 'skip', 'limit', 'descending', 'userCtx']);

/** Wraps the named storage adapters of a PouchDB constructor (before any database is opened). */
export function withCheapReads(PouchDB: { adapters: Record<string, Adapter> }, names: readonly string[]): void {
  for (const name of names) {
    const Base = PouchDB.adapters[name];
    if (!Base) continue;
    const Cheap = function (this: AdapterApi, opts: unknown, callback: unknown) {
      Base.call(this, opts, callback);
      cheapReads(this);
    } as Adapter;
    // `valid` and `use_prefix`, which PouchDB asks of the adapter.
    Object.assign(Cheap, Base);
    PouchDB.adapters[name] = Cheap;
  }
}

function cheapReads(api: AdapterApi): void {
  const own = api._allDocs.bind(api);
  const designDocs = new DesignDocListing(api, own);
  api._allDocs = (opts, callback) => {
    if (pointReadable(opts)) return keysByPointReads(api, own, opts, callback);
    if (DesignDocListing.matches(opts)) return designDocs.read(callback);
    return own(opts, callback);
  };
}

function pointReadable(opts: AllDocsOptions): opts is AllDocsOptions & { keys: string[] } {
  return Array.isArray(opts.keys) && opts.keys.every((k) => typeof k === 'string') && Object.keys(opts).every((o) => POINT_READ_OPTIONS.has(o));
}

/**
 * PouchDB's keys query (pouchdb-adapter-utils allDocsKeysQuery) with a point read per key: a row per
 * key in order, `not_found` for a missing one; a key the point read does not answer (a deleted
 * document: its row carries `deleted`) is asked as PouchDB asks each key.
 */
function keysByPointReads(api: AdapterApi, own: AdapterApi['_allDocs'], opts: AllDocsOptions & { keys: string[] }, callback: Callback<AllDocsResult>): undefined {
  const { keys, limit: _l, skip: _s, ...perKey } = opts;
  const rowOf = (key: string): Promise<Row> =>
    new Promise((resolve, reject) => {
      api._get(key, {}, (err, got) => {
        if (!err && got) {
          const row: Row = { id: key, key, value: { rev: got.doc._rev } };
          if (opts.include_docs) row.doc = withAttachmentStubs(got.doc);
          return resolve(row);
        }
        const e = err as { status?: number; reason?: string };
        if (e.status === 404 && e.reason === 'missing') return resolve({ key, error: 'not_found' });
        own({ ...perKey, key, deleted: 'ok' }, (ownErr, res) => (ownErr || !res ? reject(ownErr) : resolve(res.rows[0] ?? { key, error: 'not_found' })));
      });
    });
  Promise.all(keys.map(rowOf)).then(
    (rows) =>
      api._info((err, info) => {
        if (err || !info) return callback(err);
        callback(null, { offset: opts.skip, total_rows: info.doc_count, rows });
      }),
    (err: unknown) => callback(err),
  );
  return undefined;
}

/** As PouchDB lists documents: attachments as stubs. */
function withAttachmentStubs(doc: Record<string, unknown>): Record<string, unknown> {
  const atts = doc._attachments as Record<string, { stub?: boolean }> | undefined;
  for (const name in atts) if (Object.prototype.hasOwnProperty.call(atts, name)) atts[name]!.stub = true;
  return doc;
}

/**
 * The listing pouchdb-validation asks for before every write, read once per update sequence. A
 * listing read after the sequence was seen holds every write up to it (the sequence moves only once a
 * write is stored), so whoever sees the same sequence may have it; each caller gets its own copy.
 */
class DesignDocListing {
  private stored: { seq: number | string; text: string } | null = null;
  private reading: { seq: number | string; waiting: Callback<AllDocsResult>[] } | null = null;

  constructor(
    private readonly api: AdapterApi,
    private readonly own: AdapterApi['_allDocs'],
  ) {}

  static matches(opts: AllDocsOptions): boolean {
    const names = Object.keys(opts).filter((o) => o !== 'skip');
    return opts.startkey === '_design/' && opts.endkey === '_design0' && opts.include_docs === true && !opts.skip && names.length === 3;
  }

  read(callback: Callback<AllDocsResult>): undefined {
    this.api._info((err, info) => {
      if (err || !info) return callback(err);
      const seq = info.update_seq;
      if (this.stored?.seq === seq) return callback(null, JSON.parse(this.stored.text) as AllDocsResult);
      if (this.reading?.seq === seq) {
        this.reading.waiting.push(callback);
        return;
      }
      const reading = (this.reading = { seq, waiting: [callback] });
      this.own({ startkey: '_design/', endkey: '_design0', include_docs: true, skip: 0 }, (readErr, res) => {
        if (this.reading === reading) this.reading = null;
        if (readErr || !res) return reading.waiting.forEach((w) => w(readErr));
        const text = JSON.stringify(res);
        this.stored = { seq, text };
        reading.waiting.forEach((w) => w(null, JSON.parse(text) as AllDocsResult));
      });
    });
    return undefined;
  }
}
