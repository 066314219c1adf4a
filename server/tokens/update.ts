/**
 * Changing many tokens safely while agents work on them: read, change, write with the _rev read;
 * a 409 means someone else wrote in between, so that token is re-read and the change re-decided
 * (it may no longer match: an agent finished it meanwhile).
 */
import type { Pool } from '../client.js';
import { DatabaseError, NotAuthorisedError } from '../errors.js';
import { withDb } from '../db-errors.js';
import type { Token } from '../token.js';
import { fetchTokens } from './select.js';

export interface UpdateOutcome {
  changed: number;
  /** no longer matching when (re-)read, or gone */
  skipped: number;
  /** still conflicting after every retry */
  conflicts: number;
}

const CHUNK = 200;
const MAX_ROUNDS = 10;

interface BulkRow {
  id: string;
  ok?: boolean;
  error?: string;
  reason?: string;
}

/**
 * `change` returns the new document, or null to leave the token alone; it must decide from the
 * document it is given, since a retry hands it a fresher one. It may be async (e.g. to ask).
 */
export async function updateTokens(
  pool: Pool,
  ids: readonly string[],
  change: (t: Token) => Token | null | Promise<Token | null>,
  opts: { action: string; role: string; onProgress?: (done: number) => void },
): Promise<UpdateOutcome> {
  const outcome: UpdateOutcome = { changed: 0, skipped: 0, conflicts: 0 };
  for (let start = 0; start < ids.length; start += CHUNK) {
    let pending = ids.slice(start, start + CHUNK);
    for (let round = 0; pending.length && round < MAX_ROUNDS; round++) {
      const { found, missing } = await fetchTokens(pool, pending);
      outcome.skipped += missing.length;
      const docs: Token[] = [];
      for (const t of found) {
        const updated = await change(t);
        if (updated) docs.push(updated);
        else outcome.skipped++;
      }
      if (!docs.length) {
        pending = [];
        break;
      }
      const rows = (await withDb(pool, opts.action, () => pool.db.bulk({ docs }), { role: opts.role })) as BulkRow[];
      const retry: string[] = [];
      for (const row of rows) {
        if (row.ok) outcome.changed++;
        else if (row.error === 'conflict') retry.push(row.id);
        else throw refused(pool, row, opts, outcome);
      }
      pending = retry;
    }
    outcome.conflicts += pending.length;
    opts.onProgress?.(Math.min(start + CHUNK, ids.length));
  }
  return outcome;
}

function refused(pool: Pool, row: BulkRow, opts: { action: string; role: string }, outcome: UpdateOutcome): DatabaseError {
  const done = outcome.changed ? `${outcome.changed} tokens were changed before this.` : 'Nothing was changed.';
  if (row.error === 'forbidden' && !String(row.reason).startsWith('invalid token')) {
    return new NotAuthorisedError(`your account lacks the role ${opts.role} needed to ${opts.action} on ${pool.displayUrl} (${row.reason})`, done);
  }
  return new DatabaseError(`the pool refused to ${opts.action} ${row.id}: ${row.error}: ${row.reason}`, done);
}
