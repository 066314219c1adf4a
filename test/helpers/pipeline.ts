/** Helpers for the pipeline tests: how often a token was released, read from its stored revisions. */
import type { Pool } from '../../server/client.js';
import type { Token } from '../../server/token.js';

/**
 * The number of waiting → todo transitions in the token's revision history (a release). Old
 * revisions stay readable until compaction, which the tests never run.
 */
export async function releasesOf(pool: Pool, id: string): Promise<number> {
  const doc = (await pool.db.get(id, { revs_info: true })) as Token & { _revs_info: { rev: string; status: string }[] };
  const revs = doc._revs_info.filter((r) => r.status === 'available').map((r) => r.rev).reverse();
  let releases = 0;
  let previous: string | null = null;
  for (const rev of revs) {
    const t = (await pool.db.get(id, { rev })) as Token;
    if (previous === 'waiting' && t.status === 'todo') releases++;
    previous = t.status;
  }
  return releases;
}
