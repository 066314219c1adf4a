/**
 * What `tokenpool status --json` prints and the dashboard's JSON routes answer. Plain data only:
 * the web page imports these types too (it bundles no server code).
 */

export type StatusCounts = Partial<Record<string, number>>;

export interface ProgressRow {
  obsid: string;
  step: string;
  total: number;
  done: number;
  error: number;
  /** claimed and not finished: locked + downloading + running + uploading */
  active: number;
  counts: StatusCounts;
  /** tokens finished per hour over the last hour */
  perHour: number;
  /** seconds until the tokens not yet done or failed are done at the current rate; null when nothing finishes */
  etaSeconds: number | null;
}

export interface FailureGroup {
  obsid: string;
  step: string;
  reason: string;
  exitCode: number | null;
  /** PiCaS-format tokens (not adopted): obsid and step are "-" */
  picas: boolean;
  count: number;
  /** a few token ids of this group, first one is the representative */
  examples: string[];
}

export interface ThroughputBucket {
  /** Unix time the bucket starts */
  start: number;
  count: number;
}

export interface Throughput {
  bucketSeconds: number;
  /** tokens finished per hour over the last hour (all rows in the filter) */
  perHour: number;
  /** finished tokens per bucket, oldest first, gaps filled with 0 */
  buckets: ThroughputBucket[];
}

export interface PilotCounts {
  available: boolean;
  counts: Record<string, number>;
}

export interface StatusSummary {
  db: string;
  /** Unix time the figures were computed */
  time: number;
  filter: { obsid: string | null; step: string | null };
  totals: { total: number; counts: StatusCounts; perHour: number; etaSeconds: number | null };
  rows: ProgressRow[];
  failures: FailureGroup[];
  /** number of failure groups left out of `failures` */
  failuresOmitted: number;
  throughput: Throughput;
  pilots: PilotCounts;
  /** PiCaS-format tokens in the pool not adopted yet (not in rows or totals) */
  picasTokens: number;
  /** the same by PiCaS state (todo, locked, done, error), from lock/done/exit_code */
  picasCounts: StatusCounts;
}

export interface TokenListItem {
  id: string;
  status: string;
  obsid: string;
  step: string;
  attempts: number;
  reason: string | null;
  exitCode: number | null;
  hostname: string;
  updated: number;
}

export interface TokenPage {
  items: TokenListItem[];
  /** opaque cursor for the next page; null on the last page */
  next: string | null;
}

export interface LogTail {
  name: string;
  lines: string[];
}

export interface AttemptView {
  attempt: number;
  owner: string;
  hostname: string;
  batchJobId: string | null;
  start: number;
  end: number | null;
  exitCode: number | null;
  reason: string;
  phases: Record<string, number>;
}

export interface TokenDetail {
  id: string;
  status: string;
  obsid: string;
  step: string;
  subbands: number[];
  attempts: number;
  maxAttempts: number;
  reason: string | null;
  exitCode: number | null;
  hostname: string;
  command: string | null;
  inputs: string[];
  outputs: string[];
  times: Record<string, number>;
  history: AttemptView[];
  logs: LogTail[];
}
