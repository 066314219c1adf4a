/**
 * The agent's part in driving pipelines: once a token's outcome is stored and it ended for good,
 * its dependents are decided (server/pipelines/release.ts). A failure here loses nothing: the
 * outcome is stored, and `tokens scrub` or `pipeline advance` decides the dependents later.
 */
import type { Logger } from '../server/log.js';
import type { TokenDb } from '../server/lease.js';
import type { Copies } from '../server/branches.js';
import type { Token } from '../server/token.js';
import { advance, dependentsToAdvance } from '../server/pipelines/release.js';

export async function releaseDependents(db: TokenDb, finished: Token, copies: Copies | null, log: Logger): Promise<void> {
  const ids = dependentsToAdvance(finished);
  if (ids.length === 0) return;
  try {
    const r = await advance(db, ids, { copies, known: [finished] });
    if (r.released.length || r.blocked.length || r.unblocked.length) {
      log.info({ token: finished._id, released: r.released.length, blocked: r.blocked.length, unblocked: r.unblocked.length, conflicts: r.conflicts }, 'pipeline dependents advanced');
    }
  } catch (err) {
    log.warn({ token: finished._id, err: err instanceof Error ? err.message : String(err) }, 'pipeline dependents not advanced yet: `tokens scrub` or `pipeline advance` will');
  }
}
