/**
 * Finished tokens over time from the `done_timeline` view (keys [minute, obsid, step]): one grouped
 * range query from the start of the chart window gives both the chart and each step's hourly rate.
 */
import { DONE_BUCKET_S } from '../views/dashboard.js';
import { DESIGN, type PoolReader } from './reader.js';
import { isTokenpoolKey, matches, type StatusFilter } from './filter.js';
import type { Throughput } from './types.js';

const HOUR = 3600;

export interface DoneTimeline {
  /** finished tokens per bucket start, summed over the filter */
  buckets: Map<number, number>;
  /** per "obsid\0step": finished in the last hour and the first bucket of the hour that had any */
  lastHour: Map<string, { count: number; firstBucket: number }>;
}

export function bucketStart(t: number): number {
  return t - (t % DONE_BUCKET_S);
}

export async function doneTimeline(reader: PoolReader, filter: StatusFilter, now: number, chartSeconds: number): Promise<DoneTimeline> {
  const from = bucketStart(now - Math.max(chartSeconds, HOUR));
  const rows = await reader.view<[number, string, string], number>(DESIGN, 'done_timeline', {
    group_level: 3,
    startkey: [from],
    endkey: [{}],
  });
  const hourStart = bucketStart(now) - HOUR + DONE_BUCKET_S;
  const buckets = new Map<number, number>();
  const lastHour = new Map<string, { count: number; firstBucket: number }>();
  for (const { key, value } of rows) {
    const [bucket, obsid, step] = key;
    if (!isTokenpoolKey(key, 1) || !matches(filter, obsid, step)) continue;
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + value);
    if (bucket >= hourStart) {
      const id = stepKey(obsid, step);
      const entry = lastHour.get(id) ?? { count: 0, firstBucket: bucket };
      entry.count += value;
      entry.firstBucket = Math.min(entry.firstBucket, bucket);
      lastHour.set(id, entry);
    }
  }
  return { buckets, lastHour };
}

export function stepKey(obsid: string, step: string): string {
  return `${obsid}\u0000${step}`;
}

/**
 * Tokens per hour over the last hour. When work started less than an hour ago the rate is taken
 * over the time since the first finish (at least one bucket), not diluted over the whole hour.
 */
export function hourlyRate(count: number, firstBucket: number, now: number): number {
  if (count === 0) return 0;
  const span = Math.max(now - firstBucket, DONE_BUCKET_S);
  return (count * HOUR) / Math.min(span, HOUR);
}

export function etaSeconds(remaining: number, perHour: number): number | null {
  if (remaining <= 0) return 0;
  if (perHour <= 0) return null;
  return Math.round((remaining / perHour) * HOUR);
}

export function chartSeries(timeline: DoneTimeline, now: number, chartSeconds: number, perHour: number): Throughput {
  const first = bucketStart(now - chartSeconds) + DONE_BUCKET_S;
  const buckets = [];
  for (let start = first; start <= now; start += DONE_BUCKET_S) buckets.push({ start, count: timeline.buckets.get(start) ?? 0 });
  return { bucketSeconds: DONE_BUCKET_S, perHour, buckets };
}
