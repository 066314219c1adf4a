/**
 * What `tokenpool status` shows: the pool's progress (statusSummary), then its active pipeline runs.
 * Computed by the CLI itself, or served to it by the dashboard routes, which share one answer among
 * everyone watching the same pool. Pilot counts are never served: they come from the batch system of
 * the machine the pilots were submitted from (squeue), so the CLI adds its own.
 */
import type { PoolReader } from './reader.js';
import type { StatusFilter } from './filter.js';
import { statusSummary, type SummaryOptions } from './summary.js';
import type { StatusSummary } from './types.js';
import { activeRunSummaries, type RunSummary } from '../pipelines/summary.js';

export interface StatusReport extends StatusSummary {
  /** active pipeline runs, newest first; absent when there are none */
  pipelines?: RunSummary[];
}

export async function statusReport(reader: PoolReader, filter: StatusFilter, opts: Pick<SummaryOptions, 'pilots'> = {}): Promise<StatusReport> {
  const [summary, runs] = await Promise.all([statusSummary(reader, filter, opts), activeRunSummaries(reader, { obsid: filter.obsid ?? undefined })]);
  return runs.length ? { ...summary, pipelines: runs } : summary;
}
