/**
 * A token's status whoever worked on it. Stock PiCaS workers set lock, done and exit_code and never
 * touch `status`, so `status` alone goes stale on a pool both kinds of worker use:
 *   - a PiCaS-format token (none of tokenpool's fields) is in PiCaS's state: todo, locked, done, error;
 *   - a tokenpool token keeps its `status`, except when it says unclaimed (todo, waiting, staging)
 *     while lock or done are set: a PiCaS worker took it, and PiCaS's state is the truth.
 * A tokenpool agent always moves lock and done with status, so for its tokens the two never disagree.
 * 99 and -1 on lock/done are PiCaS's marks of a failed task (error, whatever exit_code says).
 *
 * The rule exists twice: as TypeScript for commands, and as ES5 source inlined into the views
 * (CouchDB's SpiderMonkey/QuickJS and PouchDB share no code with us); test/tokens-picas.test.ts
 * runs both over the same cases.
 */
import { TOKENPOOL_FIELDS, type TokenStatus } from './token.js';

/** What a status command shows for a PiCaS worker's failure that recorded no reason. */
export const PICAS_FAILURE_REASON = 'failed in a PiCaS worker';

type Doc = Record<string, unknown>;

const UNCLAIMED = ['todo', 'waiting', 'staging'];

function isPicasFormat(doc: Doc): boolean {
  return TOKENPOOL_FIELDS.every((f) => doc[f] === undefined);
}

/** Whether the token's state comes from PiCaS's fields rather than its `status`. */
export function movedByPicas(doc: Doc): boolean {
  if (isPicasFormat(doc)) return true;
  return UNCLAIMED.includes(doc.status as string) && (doc.lock !== 0 || doc.done !== 0);
}

export function effectiveStatus(doc: Doc): TokenStatus {
  if (!movedByPicas(doc)) return doc.status as TokenStatus;
  const { lock, done } = doc as { lock: unknown; done: unknown };
  if (lock === -1 || done === -1 || (lock === 99 && done === 99)) return 'error';
  if (done !== 0) {
    const code = exitCode(doc.exit_code);
    return code === 0 || (code === null && doc.status === 'done') ? 'done' : 'error';
  }
  return lock !== 0 ? 'locked' : 'todo';
}

/** picasclient writes integers, other PiCaS tools "" or a number as text. */
export function exitCode(v: unknown): number | null {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  return null;
}

/** Why a token is in error, for the failures view and commands. */
export function failureReason(doc: Doc): string {
  if (!movedByPicas(doc)) return typeof doc.reason === 'string' && doc.reason ? doc.reason : 'unknown';
  return PICAS_FAILURE_REASON;
}

/** When the token last changed: PiCaS workers set lock and done but not `updated`. */
export function lastChange(doc: Doc): number {
  let t = typeof doc.updated === 'number' ? doc.updated : 0;
  for (const v of [doc.lock, doc.done]) if (typeof v === 'number' && v > t) t = v;
  return t;
}

/**
 * The same rules as ES5 function declarations (effectiveStatus, failureReason, exitCodeOf, lastChange)
 * for a view's map function to call. Loose equality where PiCaS tools may write numbers as text.
 */
export const EFFECTIVE_STATUS_JS = `function movedByPicas(doc) {
    var fields = ${JSON.stringify(TOKENPOOL_FIELDS)};
    var picas = true;
    for (var i = 0; i < fields.length; i++) if (doc[fields[i]] !== undefined) picas = false;
    if (picas) return true;
    return ${JSON.stringify(UNCLAIMED)}.indexOf(doc.status) !== -1 && (doc.lock !== 0 || doc.done !== 0);
  }
  function exitCodeOf(v) {
    if (typeof v === 'number' && Math.floor(v) === v) return v;
    if (typeof v === 'string' && /^-?\\d+$/.test(v)) return parseInt(v, 10);
    return null;
  }
  function effectiveStatus(doc) {
    if (!movedByPicas(doc)) return doc.status;
    if (doc.lock === -1 || doc.done === -1 || (doc.lock === 99 && doc.done === 99)) return 'error';
    if (doc.done !== 0) {
      var code = exitCodeOf(doc.exit_code);
      return code === 0 || (code === null && doc.status === 'done') ? 'done' : 'error';
    }
    return doc.lock !== 0 ? 'locked' : 'todo';
  }
  function failureReason(doc) {
    if (!movedByPicas(doc)) return doc.reason || 'unknown';
    return ${JSON.stringify(PICAS_FAILURE_REASON)};
  }
  function lastChange(doc) {
    var t = typeof doc.updated === 'number' ? doc.updated : 0;
    if (typeof doc.lock === 'number' && doc.lock > t) t = doc.lock;
    if (typeof doc.done === 'number' && doc.done > t) t = doc.done;
    return t;
  }`;
