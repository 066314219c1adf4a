/**
 * Conflicts answered by the front. A revision that was the base of a successful update has a child
 * from then on, and a revision with a child is never a leaf again: CouchDB answers every later write
 * based on it with 409. When many agents race for one token, most losers write after the winner's
 * update came back through the front; answering them here spares the engine a write it would only
 * refuse (the losing writes cost it as much as a winning one: it reads the document and runs the
 * validate functions first).
 *
 * Most losers, though, write while the winner's update is still queued in the engine. So a write on a
 * revision that another write in flight is also based on waits for that one: if it succeeds, the
 * waiter gets its 409 here; if not, the waiter goes on to the engine. Either way the outcome is one
 * the engine could have given had the two arrived one after the other.
 *
 * Only what the front saw succeed is remembered, so a miss just lets the engine decide as before.
 */
import type http from 'node:http';

/** Single-document writes whose body is read by the front to find the base revision. */
export const MAX_FENCED_BODY = 1024 * 1024;
const MAX_DOCS = 100_000;
/** Older revisions of one document than these are unlikely to be written on again. */
const REVS_PER_DOC = 4;

/** CouchDB's answer to a write on a revision that is not a leaf. */
export const CONFLICT_BODY = { error: 'conflict', reason: 'Document update conflict.' };

/** Which document a single-document write targets and on which revision, when the request tells. */
export interface DocWrite {
  db: string;
  id: string;
  baseRev: string | null;
}

/** Called once the engine has answered a write: whether it accepted it. */
export type SettleWrite = (accepted: boolean) => void;

export class StaleRevisions {
  /** `db \0 id` → revisions that have a child, most recent last; in least recently written order. */
  private readonly stale = new Map<string, string[]>();
  /** `db \0 id \0 rev` → settles when the write in flight on that revision has its answer. */
  private readonly inFlight = new Map<string, Promise<void>>();

  /**
   * Null when the write is sure to conflict; else the function to call with the engine's answer.
   * Waits while another write on the same revision is in flight.
   */
  async admit(w: DocWrite): Promise<SettleWrite | null> {
    const base = w.baseRev;
    if (base === null) return () => undefined;
    const k = `${key(w)}\u0000${base}`;
    for (let other = this.inFlight.get(k); other; other = this.inFlight.get(k)) await other;
    if (this.stale.get(key(w))?.includes(base)) return null;
    let done!: () => void;
    this.inFlight.set(k, new Promise<void>((resolve) => (done = resolve)));
    let settled = false;
    return (accepted) => {
      if (settled) return;
      settled = true;
      if (accepted) this.superseded(w, base);
      this.inFlight.delete(k);
      done();
    };
  }

  /** The engine accepted a write based on `baseRev`: that revision now has a child. */
  private superseded(w: DocWrite, baseRev: string): void {
    const k = key(w);
    const revs = this.stale.get(k) ?? [];
    this.stale.delete(k);
    if (!revs.includes(baseRev)) revs.push(baseRev);
    if (revs.length > REVS_PER_DOC) revs.shift();
    this.stale.set(k, revs);
    if (this.stale.size > MAX_DOCS) this.stale.delete(this.stale.keys().next().value!);
  }

  /** The database was deleted or re-created: its revisions mean nothing any more. */
  forgetDb(db: string): void {
    const prefix = `${db}\u0000`;
    for (const k of this.stale.keys()) if (k.startsWith(prefix)) this.stale.delete(k);
  }

  /** The engine restarted (an in-memory one lost every document). */
  forgetAll(): void {
    this.stale.clear();
  }
}

function key(w: DocWrite): string {
  return `${w.db}\u0000${w.id}`;
}

/**
 * The URLs of writes the front may fence: PUT or DELETE of /db/doc or /db/_design/x, POST /db.
 * Not attachments, _local documents or bulk writes, which go to the engine unexamined.
 */
export function isDocWriteUrl(method: string, segments: string[]): boolean {
  const [db, first] = segments;
  if (db === undefined || db.startsWith('_')) return false;
  if (method === 'POST') return segments.length === 1;
  if (method !== 'PUT' && method !== 'DELETE') return false;
  return (segments.length === 2 && !first!.startsWith('_')) || (segments.length === 3 && first === '_design');
}

/**
 * The document and base revision of a write the front may fence (isDocWriteUrl, and no parameter
 * but `rev`: not `new_edits=false` or `batch=ok`); null for anything else. `body` is the parsed
 * request body for PUT and POST.
 */
export function docWrite(method: string, segments: string[], search: URLSearchParams, headers: http.IncomingHttpHeaders, body?: unknown): DocWrite | null {
  if (!isDocWriteUrl(method, segments)) return null;
  for (const name of search.keys()) if (name !== 'rev') return null;
  const db = segments[0]!;
  let id = segments.slice(1).join('/');
  if (method === 'POST') {
    const docId = isObject(body) ? body._id : undefined;
    if (typeof docId !== 'string' || docId === '' || docId.startsWith('_local/')) return null;
    id = docId;
  }
  const given = new Set<string>();
  const inQuery = search.get('rev');
  if (inQuery !== null) given.add(inQuery);
  if (method !== 'DELETE' && isObject(body) && typeof body._rev === 'string') given.add(body._rev);
  if (typeof headers['if-match'] === 'string') given.add(headers['if-match'].replace(/^"|"$/g, ''));
  // Revisions that disagree are the engine's to refuse (400), not a conflict.
  if (given.size > 1) return null;
  return { db, id, baseRev: given.size === 1 ? [...given][0]! : null };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
