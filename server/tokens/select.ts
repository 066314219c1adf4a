/**
 * Which tokens a command acts on: explicit ids, or a selection by status, observation, step and age.
 * Selections read key ranges of the `progress` ([obsid, step, status]) or `by_status` ([status, updated])
 * views page by page (reduce=false&limit), which stays fast on a large pool; the age and any field the
 * key does not cover are checked on the document itself.
 */
import type { Pool } from '../client.js';
import { InputError, StateError } from '../errors.js';
import { withDb } from '../db-errors.js';
import { TOKENPOOL_DDOC } from '../design.js';
import { isPicasToken, nowSeconds, TOKEN_STATUSES, type Token, type TokenStatus } from '../token.js';
import { effectiveStatus, lastChange } from '../effective-status.js';

export interface Selection {
  ids?: readonly string[];
  status?: TokenStatus;
  obsid?: string;
  step?: string;
  /** only tokens not updated for this many seconds */
  olderThan?: number;
}

export function isEmptySelection(sel: Selection): boolean {
  return !sel.ids?.length && !sel.status && !sel.obsid && !sel.step && sel.olderThan === undefined;
}

/** "90" (seconds), "90s", "30m", "2h", "3d" → seconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(text.trim());
  if (!m) throw new InputError(`${flag} ${JSON.stringify(text)} is not a duration`, 'Write it as 90s, 30m, 2h or 3d.');
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

export function parseStatus(text: string | undefined): TokenStatus | undefined {
  if (text === undefined) return undefined;
  if (!(TOKEN_STATUSES as readonly string[]).includes(text)) {
    throw new InputError(`--status ${JSON.stringify(text)} is not a token status`, `Use one of: ${TOKEN_STATUSES.join(', ')}.`);
  }
  return text as TokenStatus;
}

export function checkSelectionValues(sel: Selection): void {
  if (sel.obsid !== undefined && !/^L\d+$/.test(sel.obsid)) {
    throw new InputError(`--obsid ${JSON.stringify(sel.obsid)} is not an observation id`, 'Observation ids look like L229507.');
  }
}

export function matchesSelection(t: Token, sel: Selection, now = nowSeconds()): boolean {
  if (t.type !== 'token') return false;
  // As the views key them: a token a PiCaS worker moved is in PiCaS's state, last changed at lock/done.
  if (sel.status && effectiveStatus(t) !== sel.status) return false;
  if (sel.obsid && t.obsid !== sel.obsid) return false;
  if (sel.step && t.step !== sel.step) return false;
  if (sel.olderThan !== undefined && !(lastChange(t) <= now - sel.olderThan)) return false;
  return true;
}

interface ViewRow {
  id: string;
  key: unknown;
  doc?: Token | null;
}

/** The view and key range whose rows include every token the selection can match. */
function rangeFor(sel: Selection, now: number): { view: string; startkey?: unknown[]; endkey?: unknown[] } {
  if (sel.obsid) {
    const prefix: unknown[] = [sel.obsid];
    if (sel.step) {
      prefix.push(sel.step);
      if (sel.status) prefix.push(sel.status);
    }
    return { view: 'progress', startkey: prefix, endkey: [...prefix, {}] };
  }
  if (sel.status) {
    return { view: 'by_status', startkey: [sel.status], endkey: sel.olderThan !== undefined ? [sel.status, now - sel.olderThan] : [sel.status, {}] };
  }
  return { view: 'by_status' };
}

/** Every matching token, a page at a time (ids are looked up directly). */
export async function* scanTokens(pool: Pool, sel: Selection, pageSize = 200, now = nowSeconds()): AsyncGenerator<Token> {
  if (sel.ids?.length) {
    const { found } = await fetchTokens(pool, sel.ids, { requireAll: true });
    for (const t of found) if (matchesSelection(t, { ...sel, ids: undefined }, now)) yield t;
    return;
  }
  const range = rangeFor(sel, now);
  let next: { startkey: unknown; startkey_docid: string } | null = null;
  for (;;) {
    const params: Record<string, unknown> = { reduce: false, include_docs: true, limit: pageSize + 1 };
    if (range.startkey) params.startkey = range.startkey;
    if (range.endkey) params.endkey = range.endkey;
    if (next) Object.assign(params, next);
    const rows = await withDb(pool, `read the ${range.view} view`, async () => {
      const res = await pool.db.view(TOKENPOOL_DDOC, range.view, params);
      return res.rows as unknown as ViewRow[];
    });
    const page = rows.slice(0, pageSize);
    // The views hold PiCaS-format tokens too (in their PiCaS state); selections act on tokenpool tokens.
    for (const row of page) if (row.doc && !isPicasToken(row.doc) && matchesSelection(row.doc, sel, now)) yield row.doc;
    const more = rows[pageSize];
    if (!more) return;
    next = { startkey: more.key, startkey_docid: more.id };
  }
}

/** Documents by id; missing (or deleted) ids are an error when requireAll, so a typo is never silently skipped. */
export async function fetchTokens(pool: Pool, ids: readonly string[], opts: { requireAll?: boolean } = {}): Promise<{ found: Token[]; missing: string[] }> {
  const found: Token[] = [];
  const missing: string[] = [];
  for (let i = 0; i < ids.length; i += 200) {
    const keys = ids.slice(i, i + 200);
    const res = await withDb(pool, 'read tokens', () => pool.db.fetch({ keys }));
    for (const row of res.rows as { key: string; doc?: Token | null; error?: string }[]) {
      if (row.doc && row.doc.type === 'token') found.push(row.doc);
      else missing.push(row.key);
    }
  }
  if (opts.requireAll && missing.length) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new StateError(`no token ${shown} in ${pool.displayUrl}`, 'List the pool with: tokenpool tokens list');
  }
  return { found, missing };
}
