/** Telling a database outage from a refusal, and waiting between retries. */
import { httpStatus } from '../server/db-errors.js';

/** No HTTP answer at all, or a server-side failure: worth retrying later. */
export function isUnreachable(err: unknown): boolean {
  const status = httpStatus(err);
  return status === undefined || status >= 500;
}

/** Capped exponential backoff with jitter: 1 s, 2 s, 4 s, … up to capS. */
export function backoffMs(failures: number, capS = 60, random = Math.random): number {
  const base = Math.min(capS, 2 ** Math.min(failures, 16)) * 1000;
  return Math.round(base * (0.75 + random() * 0.5));
}

/** Sleeps, waking early when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
