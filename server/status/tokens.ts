/** One token's detail (attempt history, log tails) and paginated token lists for the dashboard. */
import { redactText } from '../redact.js';
import { InputError } from '../errors.js';
import { DESIGN, docPath, type PoolReader, type ViewRow } from './reader.js';
import { effectiveStatus, exitCode, lastChange, movedByPicas, PICAS_FAILURE_REASON } from '../effective-status.js';
import { obsidLabel } from './filter.js';
import type { AttemptView, LogTail, TokenDetail, TokenListItem, TokenPage } from './types.js';

// tokenpool's agents number logs by attempt (logs_2.out); PiCaS workers name them by token (logs_<id>.out).
const LOG_ATTACHMENT = /^logs_(.+)\.(err|out)$/;

interface RawToken {
  _id: string;
  type?: string;
  status?: string;
  obsid?: string | null;
  step?: string;
  subbands?: number[];
  attempts?: number;
  max_attempts?: number;
  reason?: string | null;
  exit_code?: number | null;
  hostname?: string;
  command?: string | null;
  input?: { url: string }[] | string;
  output?: { url: string }[];
  times?: Record<string, number>;
  updated?: number;
  history?: {
    attempt: number;
    owner: string;
    hostname: string;
    batch_job_id: string | null;
    start: number;
    end: number | null;
    exit_code: number | null;
    reason: string;
    phases?: Record<string, number>;
  }[];
  _attachments?: Record<string, unknown>;
}

/** Log attachments newest attempt first, .err before .out. */
export function logAttachments(doc: { _attachments?: Record<string, unknown> }): string[] {
  return Object.keys(doc._attachments ?? {})
    .map((name) => ({ name, m: LOG_ATTACHMENT.exec(name) }))
    .filter((x): x is { name: string; m: RegExpExecArray } => x.m !== null)
    .sort((a, b) => attemptOf(b.m[1]!) - attemptOf(a.m[1]!) || a.m[2]!.localeCompare(b.m[2]!))
    .map((x) => x.name);
}

const attemptOf = (tag: string): number => (/^\d+$/.test(tag) ? Number(tag) : 0);

export async function logTail(reader: PoolReader, id: string, name: string, lines: number): Promise<LogTail> {
  const text = await reader.getText(`${docPath(id)}/${encodeURIComponent(name)}`);
  const all = text.replace(/\n$/, '').split('\n');
  return { name, lines: all.slice(-lines).map((l) => redactText(l)) };
}

export async function tokenDetail(reader: PoolReader, id: string, opts: { logLines?: number; logs?: number } = {}): Promise<TokenDetail> {
  const doc = await reader.get<RawToken>(docPath(id));
  const logs = await Promise.all(logAttachments(doc).slice(0, opts.logs ?? 2).map((name) => logTail(reader, id, name, opts.logLines ?? 40)));
  const history: AttemptView[] = (doc.history ?? []).map((h) => ({
    attempt: h.attempt,
    owner: h.owner,
    hostname: h.hostname,
    batchJobId: h.batch_job_id,
    start: h.start,
    end: h.end,
    exitCode: h.exit_code,
    reason: h.reason,
    phases: h.phases ?? {},
  }));
  return {
    id: doc._id,
    ...picasAware(doc),
    obsid: obsidLabel(doc.obsid),
    step: doc.step ?? '',
    subbands: doc.subbands ?? [],
    attempts: doc.attempts ?? 0,
    maxAttempts: doc.max_attempts ?? 0,
    hostname: doc.hostname ?? '',
    command: doc.command ? redactText(doc.command) : null,
    inputs: Array.isArray(doc.input) ? doc.input.map((f) => redactText(f.url)) : [],
    outputs: (doc.output ?? []).map((f) => redactText(f.url)),
    times: doc.times ?? {},
    history,
    logs,
  };
}

export interface TokenListQuery {
  obsid: string;
  step: string;
  status: string;
  limit: number;
  /** cursor from a previous page */
  after?: string | null;
}

/**
 * Pages are (start key, rows of that key already shown) cursors, the paging CouchDB recommends and
 * every engine honours (PouchDB ignores startkey_docid): a page costs its own rows plus the rows of
 * its first key that earlier pages showed.
 */

/**
 * One page of tokens in a status of one observation × step from the `progress` view (keys
 * [obsid, step, status], so the cursor is how many rows earlier pages showed).
 */
export async function listTokens(reader: PoolReader, q: TokenListQuery): Promise<TokenPage> {
  const key = [q.obsid, q.step, q.status];
  const skip = q.after ? cursorPart(q.after, /^(\d+)$/)[0] : 0;
  const rows = await reader.view<unknown, number>(DESIGN, 'progress', { reduce: false, include_docs: true, key, skip, limit: q.limit + 1 });
  return { items: rows.slice(0, q.limit).map((r) => listItem(r, q.status)), next: rows.length > q.limit ? String(skip + q.limit) : null };
}

/**
 * One page of every token in a status, most recently updated first, from the `by_status` view
 * (keys [status, updated]); the cursor is "<updated>/<rows of that time already shown>".
 */
export async function listTokensInStatus(reader: PoolReader, q: Omit<TokenListQuery, 'obsid' | 'step'>): Promise<TokenPage> {
  const from = q.after ? cursorPart(q.after, /^(\d+)\/(\d+)$/) : null;
  const rows = await reader.view<[string, number], null>(DESIGN, 'by_status', {
    reduce: false,
    include_docs: true,
    descending: true,
    startkey: from ? [q.status, from[0]] : [q.status, {}],
    endkey: [q.status],
    skip: from ? from[1] : 0,
    limit: q.limit + 1,
  });
  const page = rows.slice(0, q.limit);
  const next = rows[q.limit];
  if (!next) return { items: page.map((r) => listItem(r, q.status)), next: null };
  const time = next.key[1];
  const shown = page.filter((r) => r.key[1] === time).length + (from && from[0] === time ? from[1] : 0);
  return { items: page.map((r) => listItem(r, q.status)), next: `${time}/${shown}` };
}

function cursorPart(after: string, shape: RegExp): number[] {
  const m = shape.exec(after);
  if (!m) throw new InputError(`after ${JSON.stringify(after)} is not a cursor of this list`, 'Use the "next" value of the previous page.');
  return m.slice(1).map(Number);
}

function listItem(r: ViewRow, status: string): TokenListItem {
  const d = (r.doc ?? {}) as unknown as RawToken;
  return {
    id: r.id ?? d._id,
    ...(r.doc ? picasAware(d) : { status, reason: null, exitCode: null }),
    obsid: obsidLabel(d.obsid),
    step: d.step ?? '',
    attempts: d.attempts ?? 0,
    hostname: d.hostname ?? '',
    updated: lastChange(d as unknown as Record<string, unknown>),
  };
}

/** Status, reason and exit code as the views see them: from PiCaS's fields when a PiCaS worker moved the token. */
function picasAware(d: RawToken): { status: string; reason: string | null; exitCode: number | null } {
  const doc = d as unknown as Record<string, unknown>;
  const status = effectiveStatus(doc);
  return { status, reason: status === 'error' && movedByPicas(doc) ? PICAS_FAILURE_REASON : (d.reason ?? null), exitCode: exitCode(d.exit_code) };
}
