/**
 * Creating tokens in bulk: _bulk_docs in chunks, without _rev, so that a token already in the pool
 * answers 409 and is counted as present, never overwritten. Adding the same work twice is harmless.
 */
import type { Pool } from '../client.js';
import { DatabaseError, NotAuthorisedError } from '../errors.js';
import { translateDbError } from '../db-errors.js';
import { ROLES } from '../security.js';
import type { Token } from '../token.js';

export interface WriteResult {
  created: number;
  present: number;
}

export const DEFAULT_CHUNK = 500;

interface BulkRow {
  id?: string;
  ok?: boolean;
  error?: string;
  reason?: string;
}

export async function createTokens(
  pool: Pool,
  tokens: readonly Token[],
  opts: { chunkSize?: number; onProgress?: (written: number, result: WriteResult) => void } = {},
): Promise<WriteResult> {
  const size = opts.chunkSize ?? DEFAULT_CHUNK;
  const result: WriteResult = { created: 0, present: 0 };
  for (let start = 0; start < tokens.length; start += size) {
    const chunk = tokens.slice(start, start + size);
    let rows: BulkRow[];
    try {
      rows = (await pool.db.bulk({ docs: chunk as Token[] })) as BulkRow[];
    } catch (err) {
      throw partial(translateDbError(err, { url: pool.displayUrl, action: 'write tokens', role: ROLES.agent, authenticated: pool.credentials !== null }), result);
    }
    const failed = rows.filter((r) => !r.ok && r.error !== 'conflict');
    result.created += rows.filter((r) => r.ok).length;
    result.present += rows.filter((r) => r.error === 'conflict').length;
    if (failed.length) {
      const first = failed[0]!;
      const role = first.error === 'forbidden' && !String(first.reason).startsWith('invalid token');
      const message = role
        ? `your account lacks the role ${ROLES.agent} or ${ROLES.manager} needed to write tokens on ${pool.displayUrl} (${first.reason})`
        : `the pool refused token ${first.id}: ${first.error}: ${first.reason}${failed.length > 1 ? ` (and ${failed.length - 1} more)` : ''}`;
      throw partial(role ? new NotAuthorisedError(message) : new DatabaseError(message), result);
    }
    opts.onProgress?.(Math.min(start + size, tokens.length), result);
  }
  return result;
}

/** Says how much was written before the failure, so that the user knows a re-run is safe (ids are deterministic). */
function partial(err: DatabaseError | Error, result: WriteResult): Error {
  if (result.created === 0 && result.present === 0) return err;
  const hint = `${result.created} tokens were created before this; re-running the same command adds only the rest.`;
  return new DatabaseError(err.message, hint, err instanceof DatabaseError ? err.exitCode : undefined);
}
