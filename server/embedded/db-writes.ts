/**
 * What the front knows of the writes to a database, so that stored views (stored-views.ts) need not
 * read the engine's `_changes` before every answer. A single-document write whose body the front read
 * and whose acceptance it saw tells the stored document exactly (the body with its new `_rev`): the
 * indexes apply it at once ("written through"); so does a `_bulk_docs` of plain documents, each stored
 * form told by the reply's row. Any other write (attachments, `new_edits=false`, a body the front did
 * not read) is "opaque": the next answer must read `_changes` first. So an index is current when
 * no opaque write has completed since its last read of `_changes` began.
 */
import type { JsonValue } from './collate.js';

/** Per database: counters the indexes compare with what they had when they last read `_changes`. */
export class DbWrites {
  /** opaque writes completed */
  opaque = 0;
  /** written-through writes completed */
  through = 0;
}

/** A document as the engine stored it after an accepted single-document write. */
export interface WrittenDoc {
  id: string;
  rev: string;
  deleted: boolean;
  /** the stored document, with `_id` and `_rev` */
  doc: Record<string, JsonValue>;
}

/** Underscore fields a written-through body may carry; any other (`_attachments`, `_revisions`, ...) makes the write opaque. */
const PLAIN_SPECIAL = new Set(['_id', '_rev', '_deleted']);

/**
 * The stored form of the document a PUT/POST body (or a DELETE, body undefined) wrote, given the
 * engine's reply; null when the front cannot tell it exactly.
 */
export function writtenDoc(id: string, rev: string, method: string, body: unknown): WrittenDoc | null {
  if (method === 'DELETE') return { id, rev, deleted: true, doc: { _id: id, _rev: rev, _deleted: true } };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return null;
  const fields = body as Record<string, JsonValue>;
  for (const name of Object.keys(fields)) if (name.startsWith('_') && !PLAIN_SPECIAL.has(name)) return null;
  if (fields._id !== undefined && fields._id !== id) return null;
  if (fields._deleted !== undefined && typeof fields._deleted !== 'boolean') return null;
  const deleted = fields._deleted === true;
  return { id, rev, deleted, doc: { ...fields, _id: id, _rev: rev } };
}

/** POSTs to a database that only read (the rest may write). */
const READING_POSTS = new Set(['_all_docs', '_find', '_explain', '_bulk_get', '_revs_diff', '_missing_revs', '_changes']);

/** Whether a request to a database's URL space may change its documents. */
export function mayWrite(method: string, segments: string[]): boolean {
  if (method === 'GET' || method === 'HEAD' || segments.length === 0) return false;
  if (method !== 'POST') return true;
  const [, first, , third] = segments;
  if (first !== undefined && READING_POSTS.has(first)) return false;
  // POST /db/_design/x/_view/y: a query with keys
  return !(first === '_design' && third === '_view');
}

/** `_bulk_docs` bodies up to this size are read by the front, to tell what they wrote (a release writes thousands of tokens in a few of them). */
export const MAX_BULK_BODY = 16 * 1024 * 1024;

/** POST /db/_bulk_docs without parameters. */
export function isBulkWriteUrl(method: string, segments: string[], search: URLSearchParams): boolean {
  return method === 'POST' && segments.length === 2 && !segments[0]!.startsWith('_') && segments[1] === '_bulk_docs' && search.size === 0;
}

/**
 * The documents of a `_bulk_docs` body by id, when the reply will tell how each was stored: plain
 * documents (as writtenDoc), each with an id of its own (not `_local/`), written as new edits; else
 * null, and the write is opaque.
 */
export function bulkDocs(body: unknown): Map<string, Record<string, JsonValue>> | null {
  if (!isPlainObject(body) || !Array.isArray(body.docs)) return null;
  for (const name of Object.keys(body)) if (name !== 'docs' && !(name === 'new_edits' && body.new_edits === true)) return null;
  const byId = new Map<string, Record<string, JsonValue>>();
  for (const doc of body.docs as unknown[]) {
    if (!isPlainObject(doc)) return null;
    const id = doc._id;
    if (typeof id !== 'string' || id === '' || id.startsWith('_local/') || byId.has(id)) return null;
    if (writtenDoc(id, '', 'POST', doc) === null) return null;
    byId.set(id, doc);
  }
  return byId;
}

/** The documents a `_bulk_docs` reply says were stored: one row per document sent, else null (opaque). */
export function bulkWritten(docs: Map<string, Record<string, JsonValue>>, reply: unknown): WrittenDoc[] | null {
  if (!Array.isArray(reply) || reply.length !== docs.size) return null;
  const seen = new Set<string>();
  const out: WrittenDoc[] = [];
  for (const row of reply as unknown[]) {
    if (!isPlainObject(row) || typeof row.id !== 'string' || !docs.has(row.id) || seen.has(row.id)) return null;
    seen.add(row.id);
    if (row.ok === true && typeof row.rev === 'string') out.push(writtenDoc(row.id, row.rev, 'POST', docs.get(row.id))!);
    else if (typeof row.error !== 'string') return null;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, JsonValue> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
