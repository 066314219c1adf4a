/**
 * Everything `tokenpool status` and the dashboard show, computed from grouped view queries only
 * (progress, done_timeline, failures): the cost does not grow with the number of tokens beyond
 * what the views' reduce costs.
 */
import { nowSeconds } from '../token.js';
import type { PoolReader } from './reader.js';
import type { StatusFilter } from './filter.js';
import { activeCount, addCounts, progressCounts } from './progress.js';
import { chartSeries, doneTimeline, etaSeconds, hourlyRate, stepKey } from './throughput.js';
import { failureGroups } from './failures.js';
import type { PilotCounts, ProgressRow, StatusCounts, StatusSummary } from './types.js';

export interface SummaryOptions {
  /** how far back the throughput chart reaches; default 6 hours */
  chartSeconds?: number;
  maxFailureGroups?: number;
  /** pilot counts from submission records; absent where that module is not available */
  pilots?: () => Promise<PilotCounts>;
  now?: number;
}

export async function statusSummary(reader: PoolReader, filter: StatusFilter, opts: SummaryOptions = {}): Promise<StatusSummary> {
  const now = opts.now ?? nowSeconds();
  const chartSeconds = opts.chartSeconds ?? 6 * 3600;
  const [{ steps, picas }, timeline, failures, pilots] = await Promise.all([
    progressCounts(reader, filter),
    doneTimeline(reader, filter, now, chartSeconds),
    failureGroups(reader, filter, { maxGroups: opts.maxFailureGroups ?? 20, exampleGroups: 8 }),
    opts.pilots ? opts.pilots() : Promise.resolve({ available: false, counts: {} }),
  ]);

  const rows: ProgressRow[] = steps
    .sort((a, b) => a.obsid.localeCompare(b.obsid) || a.step.localeCompare(b.step))
    .map((s) => {
      const hour = timeline.lastHour.get(stepKey(s.obsid, s.step));
      const perHour = hour ? hourlyRate(hour.count, hour.firstBucket, now) : 0;
      const done = s.counts.done ?? 0;
      const error = s.counts.error ?? 0;
      return {
        obsid: s.obsid,
        step: s.step,
        total: s.total,
        done,
        error,
        active: activeCount(s.counts),
        counts: s.counts,
        perHour: round1(perHour),
        etaSeconds: etaSeconds(s.total - done - error, perHour),
      };
    });

  const counts: StatusCounts = {};
  for (const r of rows) addCounts(counts, r.counts);
  const total = rows.reduce((n, r) => n + r.total, 0);
  let hourCount = 0;
  let firstBucket = now;
  for (const h of timeline.lastHour.values()) {
    hourCount += h.count;
    firstBucket = Math.min(firstBucket, h.firstBucket);
  }
  const perHour = hourlyRate(hourCount, firstBucket, now);
  const remaining = total - (counts.done ?? 0) - (counts.error ?? 0);

  return {
    db: reader.dbName,
    time: now,
    filter: { obsid: filter.obsid ?? null, step: filter.step ?? null },
    totals: { total, counts, perHour: round1(perHour), etaSeconds: etaSeconds(remaining, perHour) },
    rows,
    failures: failures.groups,
    failuresOmitted: failures.omitted,
    throughput: chartSeries(timeline, now, chartSeconds, round1(perHour)),
    pilots,
    picasTokens: Object.values(picas).reduce((n: number, c) => n + (c ?? 0), 0),
    picasCounts: picas,
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
