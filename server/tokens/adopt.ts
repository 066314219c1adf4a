/**
 * `tokens adopt`: upgrades the pool's PiCaS-format tokens to tokenpool tokens in place. First every
 * candidate is checked (a token adopt cannot convert stops the whole run before anything is
 * written), then each is rewritten with the _rev it was read at; a 409 means a PiCaS pilot or another
 * tool wrote in between, so that token is re-read and decided again.
 */
import type { Pool } from '../client.js';
import { DatabaseError, InputError } from '../errors.js';
import { withDb } from '../db-errors.js';
import { ROLES } from '../security.js';
import { isPicasToken, nowSeconds, type Token } from '../token.js';
import { fetchTokens } from './select.js';
import { adoptPicasToken, SRM_ATTACHMENT, type AdoptDefaults, type Adoption } from './picas.js';

export interface AdoptOptions extends AdoptDefaults {
  /** only these tokens; default every PiCaS-format token in the pool */
  ids?: readonly string[];
  dryRun?: boolean;
  now?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface AdoptReport {
  /** found in PiCaS format */
  candidates: number;
  adopted: { id: string; status: string; from: string }[];
  skipped: { id: string; reason: string }[];
  /** still conflicting after every retry: run again */
  conflicts: string[];
}

type Doc = Record<string, unknown> & { _id: string };

const PAGE = 500;
const MAX_ROUNDS = 10;

export async function adoptTokens(pool: Pool, opts: AdoptOptions = {}): Promise<AdoptReport> {
  const now = opts.now ?? nowSeconds();
  const srm = srmReader(pool);
  const decide = async (doc: Doc): Promise<Adoption> =>
    isPicasToken(doc) ? adoptPicasToken(doc, opts, now, await srm(doc)) : { kind: 'skip', reason: 'already a tokenpool token' };

  // Pass 1: decide for every candidate, writing nothing.
  const report: AdoptReport = { candidates: 0, adopted: [], skipped: [], conflicts: [] };
  const planned: AdoptReport['adopted'] = [];
  const problems: string[] = [];
  for await (const doc of candidates(pool, opts.ids)) {
    if (isPicasToken(doc)) report.candidates++;
    const d = await decide(doc);
    if (d.kind === 'adopt') planned.push({ id: doc._id, status: d.token.status, from: d.from });
    else if (d.kind === 'skip') report.skipped.push({ id: doc._id, reason: d.reason });
    else problems.push(`${doc._id}: ${d.field} ${d.message}`);
  }
  if (problems.length) {
    const shown = problems.slice(0, 10).join('\n  ') + (problems.length > 10 ? `\n  … and ${problems.length - 10} more` : '');
    throw new InputError(
      `cannot adopt ${problems.length} PiCaS token${problems.length > 1 ? 's' : ''}; nothing was changed:\n  ${shown}`,
      'Give what the tokens lack (--obsid L229507, --step NAME), or fix the named fields, then run adopt again.',
    );
  }
  if (opts.dryRun) return { ...report, adopted: planned };

  // Pass 2: write with the _rev read; re-read and re-decide on conflict.
  for (let start = 0; start < planned.length; start += PAGE) {
    let pending = planned.slice(start, start + PAGE).map((p) => p.id);
    for (let round = 0; pending.length && round < MAX_ROUNDS; round++) {
      const { found, missing } = await fetchTokens(pool, pending);
      for (const id of missing) report.skipped.push({ id, reason: 'deleted meanwhile' });
      const docs: Token[] = [];
      const from = new Map<string, string>();
      for (const doc of found as unknown as Doc[]) {
        const d = await decide(doc);
        if (d.kind === 'adopt') {
          docs.push(d.token);
          from.set(doc._id, d.from);
        } else report.skipped.push({ id: doc._id, reason: d.kind === 'skip' ? `changed meanwhile: ${d.reason}` : `changed meanwhile: ${d.field} ${d.message}` });
      }
      if (!docs.length) {
        pending = [];
        break;
      }
      const rows = (await withDb(pool, 'adopt tokens', () => pool.db.bulk({ docs }), { role: `${ROLES.agent} or ${ROLES.manager}` })) as {
        id: string;
        ok?: boolean;
        error?: string;
        reason?: string;
      }[];
      const retry: string[] = [];
      for (const row of rows) {
        if (row.ok) report.adopted.push({ id: row.id, status: docs.find((t) => t._id === row.id)!.status, from: from.get(row.id)! });
        else if (row.error === 'conflict') retry.push(row.id);
        else {
          const done = report.adopted.length ? `${report.adopted.length} tokens were adopted before this; run adopt again for the rest.` : 'Nothing was changed.';
          throw new DatabaseError(`the pool refused to adopt ${row.id}: ${row.error}: ${row.reason}`, done);
        }
      }
      pending = retry;
    }
    report.conflicts.push(...pending);
    opts.onProgress?.(Math.min(start + PAGE, planned.length), planned.length);
  }
  return report;
}

/**
 * PiCaS-format tokens a page at a time: Mango _find in _id order (CouchDB answers it from _all_docs,
 * no index needed), continuing after the last id, so that adopted tokens leaving the selection do not
 * shift pages. Explicit ids are read directly.
 */
async function* candidates(pool: Pool, ids: readonly string[] | undefined): AsyncGenerator<Doc> {
  if (ids?.length) {
    for (const doc of (await fetchTokens(pool, ids, { requireAll: true })).found) yield doc as unknown as Doc;
    return;
  }
  let after = '';
  for (;;) {
    const selector = { type: 'token', obsid: { $exists: false }, _id: { $gt: after } };
    const res = await withDb(pool, 'find PiCaS-format tokens', () => pool.db.find({ selector, fields: ['_id'], sort: [{ _id: 'asc' }], limit: PAGE }));
    const page = res.docs.map((d) => d._id);
    if (!page.length) return;
    const { found } = await fetchTokens(pool, page);
    for (const doc of found as unknown as Doc[]) if (isPicasToken(doc)) yield doc;
    if (page.length < PAGE) return;
    after = page[page.length - 1]!;
  }
}

/** The token's srm.txt (GRID_LRT's SURL list), read once per attachment version. */
function srmReader(pool: Pool): (doc: Doc) => Promise<string | null> {
  const cache = new Map<string, string>();
  return async (doc) => {
    const stub = (doc._attachments as Record<string, { digest?: string }> | undefined)?.[SRM_ATTACHMENT];
    if (!stub) return null;
    const key = `${doc._id}\u0000${stub.digest ?? ''}`;
    let text = cache.get(key);
    if (text === undefined) {
      const data = await withDb(pool, `read ${SRM_ATTACHMENT} of ${doc._id}`, () => pool.db.attachment.get(doc._id, SRM_ATTACHMENT));
      text = Buffer.from(data).toString('utf8');
      cache.set(key, text);
    }
    return text;
  };
}
