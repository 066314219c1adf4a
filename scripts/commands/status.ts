/** `tokenpool status`: progress per observation × step, rates, ETA, failures, pipeline runs; --watch keeps it up to date. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import type { Pool } from '../../server/client.js';
import { InputError } from '../../server/errors.js';
import { printJson, printLine, table } from '../output.js';
import { readerFromPool } from '../../server/status/reader.js';
import { checkFilter, type StatusFilter } from '../../server/status/filter.js';
import { renderStatus } from '../../server/status/render.js';
import { watchChanges, type WatchOptions } from '../../server/status/watch.js';
import { pilotCountsFor } from '../../server/status/pilots.js';
import { statusReport, type StatusReport } from '../../server/status/report.js';
import { openServedStatus } from '../../server/status/served.js';
import type { PilotCounts } from '../../server/status/types.js';
import { redactText } from '../../server/redact.js';
import { renderRun } from '../../server/pipelines/summary.js';

interface StatusArgs extends PoolArgs {
  obsid?: string;
  step?: string;
  watch: boolean;
  dashboard?: string;
  json: boolean;
}

/** Where the report comes from: served (shared by every watcher) or computed here from the views. */
interface StatusSource {
  report(): Promise<StatusReport>;
  follow(opts: Pick<WatchOptions, 'signal' | 'onChange' | 'onError'>): Promise<void>;
}

/** squeue is asked at most this often while watching: a batch system's scheduler is not a monitoring backend. */
const PILOTS_FRESH_MS = 30_000;

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'Progress per observation × step: counts per status, throughput, ETA, failures; then each active pipeline run by step',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('obsid', { type: 'string', describe: 'Only this observation, e.g. L229507' })
      .option('step', { type: 'string', describe: 'Only this pipeline step' })
      .option('watch', { type: 'boolean', default: false, describe: 'Keep updating as tokens change (Ctrl-C to stop)' })
      .option('dashboard', {
        type: 'string',
        describe: 'Read the report from this `tokenpool dashboard` (one report a second shared by every watcher) instead of querying the database (TOKENPOOL_DASHBOARD)',
      })
      .example('$0 status --db http://127.0.0.1:5984/lofar', 'One table of progress')
      .example('$0 status --obsid L229507 --watch', 'Follow one observation live')
      .example('$0 status --watch --dashboard http://127.0.0.1:8080', 'Follow a remote pool through the dashboard process serving it') as unknown as Argv<StatusArgs>,
  handler: async (args) => {
    const filter = checkFilter({ obsid: args.obsid, step: args.step });
    const pool = poolFromArgs(args);
    const source = await statusSource(pool, filter, args.dashboard, args.watch);
    const show = async () => {
      const report = await source.report();
      if (args.json) printJson(report);
      else printLine([renderStatus(report, table), ...(report.pipelines ?? []).map((r) => renderRun(r, table))].join('\n\n'));
    };
    if (!args.watch) return show();
    await watch(source, args.json, show);
  },
};

/**
 * The served report when --dashboard names where it is served, or when watching a server that serves
 * one (the embedded server); else the views queried from here. A single `status` without --dashboard
 * queries the views, so that it shows a write made just before, not a report shared up to a second
 * old. Pilots are always counted here: their state comes from this machine's batch system.
 */
async function statusSource(pool: Pool, filter: StatusFilter, dashboard: string | undefined, watch: boolean): Promise<StatusSource> {
  const pilots = cached(() => pilotCountsFor(pool), watch ? PILOTS_FRESH_MS : 0);
  // A dashboard elsewhere reads the pool with its own account: ours is not sent to it.
  const at = { base: dashboard ?? pool.serverUrl, db: pool.dbName, authorization: dashboard ? null : pool.authorization, quietMs: pool.quietMs, shownAs: dashboard ?? pool.displayUrl };
  const served = dashboard || watch ? await openServedStatus(at, filter) : null;
  if (served) return { report: async () => ({ ...(await served.report()), pilots: await pilots() }), follow: (f) => served.follow(f) };
  if (dashboard) throw new InputError(`--dashboard ${dashboard} serves no status of ${pool.dbName}`, 'Give the address `tokenpool dashboard --db …` prints, without a path, e.g. http://127.0.0.1:8080.');
  const reader = readerFromPool(pool);
  // The pilot count reads through a client of its own, beside the reader's queries: one request first,
  // so that a wrong password is one refused login (CouchDB 3 locks an account out after a few).
  await reader.get('');
  return { report: () => statusReport(reader, filter, { pilots }), follow: (f) => watchChanges(reader, f) };
}

function cached(read: () => Promise<PilotCounts>, freshMs: number): () => Promise<PilotCounts> {
  let last: { at: number; value: Promise<PilotCounts> } | null = null;
  return () => {
    if (!last || Date.now() - last.at >= freshMs) last = { at: Date.now(), value: read() };
    return last.value;
  };
}

async function watch(source: StatusSource, json: boolean, show: () => Promise<void>): Promise<void> {
  const tty = process.stdout.isTTY && !json;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const draw = async () => {
    if (tty) process.stdout.write('\x1b[H\x1b[2J');
    await show();
    if (tty) printLine('\nWatching for changes (Ctrl-C to stop)…');
  };
  await draw();
  let running = Promise.resolve();
  let queued = false;
  const redraw = () => {
    // One query at a time; changes during a query ask for exactly one more.
    if (queued) return;
    queued = true;
    running = running
      .then(() => {
        queued = false;
        return controller.signal.aborted ? undefined : draw();
      })
      .catch((err: unknown) => warn(`status query failed (${(err as Error).message})`));
  };
  await source.follow({
    signal: controller.signal,
    onChange: redraw,
    onError: (err) => warn(`following changes failed (${(err as Error).message}); retrying`),
  });
  await running;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
}

function warn(message: string): void {
  process.stderr.write(redactText(`warning: ${message}\n`));
}
