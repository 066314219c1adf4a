/** Deleting tokens (a manager's right): tombstones written with the _rev read, conflicts re-read. */
import type { Pool } from '../client.js';
import { ROLES } from '../security.js';
import type { Token } from '../token.js';
import { matchesSelection, scanTokens, type Selection } from './select.js';
import { updateTokens, type UpdateOutcome } from './update.js';

export interface DeleteReport extends UpdateOutcome {
  matched: number;
  ids: string[];
}

/** Finds what a delete would remove (the CLI asks for confirmation in between). */
export async function selectForDelete(pool: Pool, sel: Selection): Promise<string[]> {
  const ids: string[] = [];
  for await (const t of scanTokens(pool, sel, 500)) ids.push(t._id);
  return ids;
}

export async function deleteTokens(pool: Pool, ids: readonly string[], sel: Selection, onProgress?: (done: number) => void): Promise<DeleteReport> {
  const filter: Selection = { ...sel, ids: undefined };
  const outcome = await updateTokens(
    pool,
    ids,
    (t) => (matchesSelection(t, filter) ? ({ _id: t._id, _rev: t._rev, _deleted: true } as unknown as Token) : null),
    { action: 'delete tokens', role: ROLES.manager, onProgress },
  );
  return { matched: ids.length, ids: [...ids], ...outcome };
}
