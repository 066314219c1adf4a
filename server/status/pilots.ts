/**
 * Pilots queued/running, from submission records (server/submissions.ts, written separately). Loaded
 * at run time so status works on an installation without that module; a failure to count pilots
 * never hides the token status.
 */
import type { Pool } from '../client.js';
import type { PilotCounts } from './types.js';

const SUBMISSIONS_MODULE = '../submissions.js';

type PilotCountsFn = (pool: Pool) => Promise<Record<string, number>>;

export async function pilotCountsFor(pool: Pool): Promise<PilotCounts> {
  let fn: PilotCountsFn | undefined;
  try {
    fn = ((await import(SUBMISSIONS_MODULE)) as { pilotCounts?: PilotCountsFn }).pilotCounts;
  } catch {
    return { available: false, counts: {} };
  }
  if (!fn) return { available: false, counts: {} };
  try {
    const counts = await fn(pool);
    return { available: true, counts: Object.fromEntries(Object.entries(counts).filter(([, n]) => typeof n === 'number')) };
  } catch {
    return { available: false, counts: {} };
  }
}
