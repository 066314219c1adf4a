/**
 * The status report as the dashboard routes serve it (server/dashboard/routes.ts): on the embedded
 * server's front, or from a `tokenpool dashboard` process in front of a remote CouchDB. Watchers that
 * read it share one report a second and one changes watcher on the server, instead of each querying
 * the views and following `_changes` itself, so monitoring does not compete with the agents.
 */
import http from 'node:http';
import https from 'node:https';
import { NotAuthorisedError, UnreachableError } from '../errors.js';
import { DASHBOARD_PREFIX } from '../dashboard/routes.js';
import { watchAnswer } from '../deadline.js';
import { createReader } from './reader.js';
import type { StatusFilter } from './filter.js';
import type { StatusReport } from './report.js';
import { sleep, type WatchOptions } from './watch.js';

export interface ServedStatus {
  report(): Promise<StatusReport>;
  /** Calls onChange when the pool changed (at most once a second, the server's pace) until the signal aborts. */
  follow(opts: Pick<WatchOptions, 'signal' | 'onChange' | 'onError' | 'retryMs'>): Promise<void>;
}

export interface ServedOptions {
  /** the server's root, e.g. http://127.0.0.1:5984 or a `tokenpool dashboard` at http://127.0.0.1:8080 */
  base: string;
  db: string;
  authorization: string | null;
  quietMs: number;
  /** how messages name the server when it cannot be reached: the database URL, or the --dashboard given */
  shownAs: string;
}

/**
 * The served report, or null when `base` does not serve one (a plain CouchDB answers 400 or 404 under
 * the dashboard prefix). A refusal is not "not served": it is thrown, as a direct query would be.
 */
export async function openServedStatus(opts: ServedOptions, filter: StatusFilter): Promise<ServedStatus | null> {
  const api = `${opts.base.replace(/\/$/, '')}${DASHBOARD_PREFIX}/${encodeURIComponent(opts.db)}/api`;
  const reader = createReader({ dbUrl: api, dbName: opts.db, authorization: opts.authorization, quietMs: opts.quietMs, shownAs: opts.shownAs });
  const query = { obsid: filter.obsid ?? undefined, step: filter.step ?? undefined };
  const report = () => reader.get<StatusReport>('status', query);
  try {
    await report();
  } catch (err) {
    // Only a server that answered "no such thing" serves no report; one that refused us, cannot be
    // reached or does not answer would fail the views the same way, so it fails here, at once.
    // Asked without credentials (a `tokenpool dashboard` needs none), a refusal means "not a dashboard" too.
    if ((err instanceof NotAuthorisedError && opts.authorization !== null) || err instanceof UnreachableError) throw err;
    return null;
  }
  return { report, follow: (f) => followEvents(`${api}/events`, opts, f) };
}

/** Reads the server's event stream (Server-Sent Events) and reconnects after a failure. */
async function followEvents(url: string, opts: ServedOptions, f: Parameters<ServedStatus['follow']>[0]): Promise<void> {
  let reconnect = false;
  while (!f.signal.aborted) {
    try {
      // After a reconnect, whatever changed while no stream was open is shown at once.
      await readStream(url, opts, f.signal, f.onChange, reconnect);
    } catch (err) {
      if (f.signal.aborted) return;
      f.onError?.(err);
    }
    reconnect = true;
    await sleep(f.retryMs ?? 2000, f.signal);
  }
}

/** One connection to the event stream; resolves when the server ends it or the signal aborts. */
function readStream(url: string, opts: ServedOptions, signal: AbortSignal, onChange: () => void, changedMeanwhile: boolean): Promise<void> {
  const target = new URL(url);
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  if (opts.authorization) headers.authorization = opts.authorization;
  return new Promise((resolve, reject) => {
    const req = (target.protocol === 'https:' ? https : http).get(target, { headers, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish(new Error(`the event stream at ${target.origin} answered ${res.statusCode ?? '?'}`));
        return;
      }
      if (changedMeanwhile) onChange();
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        answer.progress();
        pending += chunk;
        let end: number;
        while ((end = pending.indexOf('\n\n')) >= 0) {
          const event = pending.slice(0, end);
          pending = pending.slice(end + 2);
          if (/^event: change$/m.test(event)) onChange();
        }
      });
      res.on('end', () => finish());
      res.on('error', finish);
    });
    // The server sends a keep-alive comment every 20 s; silence beyond the deadline is asked about like any request.
    const answer = watchAnswer(target.origin, opts.quietMs, (err) => finish(err));
    const abort = () => finish();
    signal.addEventListener('abort', abort, { once: true });
    req.on('error', finish);
    let settled = false;
    function finish(err?: Error) {
      if (settled) return;
      settled = true;
      answer.done();
      signal.removeEventListener('abort', abort);
      req.destroy();
      if (err && !signal.aborted) reject(err);
      else resolve();
    }
  });
}
