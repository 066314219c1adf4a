/** Counts per observation × step × status from the grouped `progress` view: one query, no token read. */
import { TOKEN_STATUSES, ACTIVE_STATUSES } from '../token.js';
import { DESIGN, type PoolReader } from './reader.js';
import { isTokenpoolKey, keyRange, matches, obsidLabel, type StatusFilter } from './filter.js';
import type { StatusCounts } from './types.js';

export interface StepCounts {
  obsid: string;
  step: string;
  counts: StatusCounts;
  total: number;
}

export interface ProgressCounts {
  steps: StepCounts[];
  /** PiCaS-format tokens (no obsid/step yet) by PiCaS state: `tokens adopt` turns them into tokenpool tokens */
  picas: StatusCounts;
}

export async function progressCounts(reader: PoolReader, filter: StatusFilter): Promise<ProgressCounts> {
  const rows = await reader.view<[string | null, string, string], number>(DESIGN, 'progress', { group_level: 3, ...keyRange(filter) });
  const byStep = new Map<string, StepCounts>();
  const picas: StatusCounts = {};
  for (const { key, value } of rows) {
    if (!isTokenpoolKey(key)) {
      // Only an unfiltered query sees them: they have no observation or step to match.
      picas[key[2]] = (picas[key[2]] ?? 0) + value;
      continue;
    }
    const [rawObsid, step, status] = key;
    const obsid = obsidLabel(rawObsid);
    if (!matches(filter, obsid, step)) continue;
    const id = `${obsid}\u0000${step}`;
    let entry = byStep.get(id);
    if (!entry) {
      entry = { obsid, step, counts: {}, total: 0 };
      byStep.set(id, entry);
    }
    entry.counts[status] = (entry.counts[status] ?? 0) + value;
    entry.total += value;
  }
  return { steps: [...byStep.values()], picas };
}

export function activeCount(counts: StatusCounts): number {
  return ACTIVE_STATUSES.reduce((sum, s) => sum + (counts[s] ?? 0), 0);
}

/** Statuses in lifecycle order, then any unknown ones a foreign tool wrote. */
export function orderedStatuses(counts: StatusCounts): string[] {
  const known = TOKEN_STATUSES.filter((s) => (counts[s] ?? 0) > 0);
  const other = Object.keys(counts).filter((s) => !(TOKEN_STATUSES as readonly string[]).includes(s) && (counts[s] ?? 0) > 0);
  return [...known, ...other.sort()];
}

export function addCounts(into: StatusCounts, from: StatusCounts): void {
  for (const [s, n] of Object.entries(from)) into[s] = (into[s] ?? 0) + (n ?? 0);
}
