/**
 * Live updates from the database's _changes feed: a longpoll from "now", so an idle pool costs one
 * open request and a busy one at most one feed request and one re-query per `throttleMs`, never a
 * fixed poll.
 */
import type { PoolReader, ChangesAnswer } from './reader.js';

export interface WatchOptions {
  signal: AbortSignal;
  /** called after something changed; at most once per throttleMs */
  onChange: () => void;
  throttleMs?: number;
  /** how long the database holds one longpoll open */
  pollTimeoutMs?: number;
  /** called when the feed fails; the watch retries after retryMs */
  onError?: (err: unknown) => void;
  retryMs?: number;
}

export async function watchChanges(reader: PoolReader, opts: WatchOptions): Promise<void> {
  const throttleMs = opts.throttleMs ?? 1000;
  let since: string | number = 'now';
  let timer: NodeJS.Timeout | null = null;
  const fire = () => {
    timer = null;
    if (!opts.signal.aborted) opts.onChange();
  };
  opts.signal.addEventListener('abort', () => timer && clearTimeout(timer), { once: true });
  while (!opts.signal.aborted) {
    try {
      const answer: ChangesAnswer = await reader.get<ChangesAnswer>('_changes', { feed: 'longpoll', since, timeout: opts.pollTimeoutMs ?? 25_000 }, opts.signal);
      since = answer.last_seq;
      if (answer.results.length > 0) {
        if (timer === null) timer = setTimeout(fire, throttleMs);
        // On a busy pool every longpoll returns at once: asking again only after the throttle time
        // keeps a watcher at one feed request a second, however fast agents write.
        await sleep(throttleMs, opts.signal);
      }
    } catch (err) {
      if (opts.signal.aborted) return;
      opts.onError?.(err);
      await sleep(opts.retryMs ?? 2000, opts.signal);
    }
  }
}

/** Waits ms, or less when the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    // The listener goes when the time is up: a watch sleeps once a second for days.
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
