/**
 * Pilots queued/running from the submission records (server/submissions.ts). Read-only here: no
 * submission is marked finished from a status query. A failure to count pilots (no squeue, an old
 * pool without the view) never hides the token status; it only leaves the pilots line out.
 */
import type { Pool } from '../client.js';
import { pilotCounts } from '../submissions.js';
import type { PilotCounts } from './types.js';

export async function pilotCountsFor(pool: Pool): Promise<PilotCounts> {
  try {
    const counts = { ...(await pilotCounts(pool, { markFinished: false })) };
    const any = Object.values(counts).some((n) => n > 0);
    return { available: any, counts: any ? counts : {} };
  } catch {
    return { available: false, counts: {} };
  }
}
