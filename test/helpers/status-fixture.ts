/**
 * Pools with tokens in every status, for the status, dashboard and bench tests: written with
 * _bulk_docs (fast on the embedded engine), and the counts the views must answer.
 */
import type { Pool } from '../../server/client.js';
import { initDatabase } from '../../server/setup.js';
import { newToken, nowSeconds, TOKEN_STATUSES, type Token, type TokenStatus } from '../../server/token.js';

export interface SeedSpec {
  obsids: string[];
  steps: string[];
  /** tokens per obsid × step */
  perStep: number;
  /** share of each status; the rest are todo */
  shares?: Partial<Record<TokenStatus, number>>;
}

export const FAILURE_REASONS = [
  { reason: 'exit code 1', exit_code: 1 },
  { reason: 'checksum mismatch', exit_code: 21 },
] as const;

const DEFAULT_SHARES: Partial<Record<TokenStatus, number>> = {
  waiting: 0.05,
  staging: 0.05,
  locked: 0.05,
  downloading: 0.05,
  running: 0.1,
  uploading: 0.05,
  done: 0.4,
  error: 0.1,
};

export interface Seeded {
  total: number;
  /** counts per "obsid/step" then per status */
  counts: Record<string, Partial<Record<TokenStatus, number>>>;
  errorIds: string[];
}

export function statusFor(i: number, n: number, shares: Partial<Record<TokenStatus, number>>): TokenStatus {
  let edge = 0;
  for (const s of TOKEN_STATUSES) {
    edge += (shares[s] ?? 0) * n;
    if (i < Math.round(edge)) return s;
  }
  return 'todo';
}

/** A token as the agent would leave it in `status`, finished `age` seconds ago when done or failed. */
export function tokenIn(obsid: string, step: string, subband: number, status: TokenStatus, now: number, age: number, withLog: boolean): Token {
  const t = newToken({ obsid, step, subbands: [subband], command: 'average.js', input: [{ url: `file:///data/${obsid}_SB${String(subband).padStart(3, '0')}_uv.MS_0a1b2c3d.tar` }] }, now - 7200);
  t.status = status;
  t.times = { todo: now - 7200, [status]: now - age };
  if (status === 'todo' || status === 'waiting' || status === 'staging') return t;
  t.lock = now - age - 60;
  t.hostname = `wn${subband % 7}.example.org`;
  t.attempts = 1;
  if (status === 'done' || status === 'error') {
    const fail = FAILURE_REASONS[subband % FAILURE_REASONS.length]!;
    t.done = now - age;
    t.exit_code = status === 'done' ? 0 : fail.exit_code;
    t.reason = status === 'done' ? null : fail.reason;
    t.history = [
      {
        attempt: 1,
        claim_id: `c${subband}`,
        owner: `agent-${subband % 3}`,
        hostname: t.hostname,
        batch_job_id: `${1000 + (subband % 5)}_${subband}`,
        start: now - age - 60,
        end: now - age,
        exit_code: t.exit_code,
        reason: status === 'done' ? 'done' : fail.reason,
        phases: { downloading: 5, running: 50, uploading: 5 },
      },
    ];
    if (status === 'error' && withLog) {
      const log = Array.from({ length: 30 }, (_, i) => `line ${i + 1} of the step's stderr`).join('\n') + `\nFATAL: ${fail.reason}\n`;
      t._attachments = { 'logs_1.err': { content_type: 'text/plain', data: Buffer.from(log).toString('base64') } };
    }
  }
  return t;
}

export async function seedPool(pool: Pool, spec: SeedSpec, opts: { init?: boolean; batch?: number } = {}): Promise<Seeded> {
  if (opts.init !== false) await initDatabase(pool, { guard: true });
  const now = nowSeconds();
  const shares = spec.shares ?? DEFAULT_SHARES;
  const seeded: Seeded = { total: 0, counts: {}, errorIds: [] };
  let batch: Token[] = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const res = await pool.db.bulk({ docs: batch });
    const failed = res.filter((r) => r.error);
    if (failed.length) throw new Error(`bulk insert failed: ${JSON.stringify(failed[0])}`);
    batch = [];
  };
  for (const obsid of spec.obsids) {
    for (const step of spec.steps) {
      const counts: Partial<Record<TokenStatus, number>> = {};
      for (let i = 0; i < spec.perStep; i++) {
        const status = statusFor(i, spec.perStep, shares);
        // finished within the last 50 minutes, so that all of them count towards the hourly rate
        const t = tokenIn(obsid, step, i, status, now, 30 + (i % 3000), seeded.errorIds.length < 50);
        if (status === 'error') seeded.errorIds.push(t._id);
        counts[status] = (counts[status] ?? 0) + 1;
        batch.push(t);
        if (batch.length >= (opts.batch ?? 2000)) await flush();
      }
      seeded.counts[`${obsid}/${step}`] = counts;
      seeded.total += spec.perStep;
    }
  }
  await flush();
  return seeded;
}

/** Marks one running token of obsid × step done, as an agent finishing it would. */
export async function finishOneRunning(pool: Pool, obsid: string, step: string): Promise<void> {
  const running = await pool.db.view('tokenpool', 'progress', { reduce: false, key: [obsid, step, 'running'], limit: 1, include_docs: true });
  const doc = running.rows[0]!.doc as Token;
  const now = nowSeconds();
  await pool.db.insert({ ...doc, status: 'done', done: now, exit_code: 0, times: { ...doc.times, done: now } });
}
