/** `tokenpool status`: progress per observation × step, rates, ETA, failures; --watch follows the changes feed. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine, table } from '../output.js';
import { readerFromPool, type PoolReader } from '../../server/status/reader.js';
import { checkFilter } from '../../server/status/filter.js';
import { statusSummary } from '../../server/status/summary.js';
import { renderStatus } from '../../server/status/render.js';
import { watchChanges } from '../../server/status/watch.js';
import { pilotCountsFor } from '../../server/status/pilots.js';
import { redactText } from '../../server/redact.js';
import { activeRunSummaries, renderRun } from '../../server/pipelines/summary.js';

interface StatusArgs extends PoolArgs {
  obsid?: string;
  step?: string;
  watch: boolean;
  json: boolean;
}

export const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'Progress per observation × step: counts per status, throughput, ETA, failures; then each active pipeline run by step',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('obsid', { type: 'string', describe: 'Only this observation, e.g. L229507' })
      .option('step', { type: 'string', describe: 'Only this pipeline step' })
      .option('watch', { type: 'boolean', default: false, describe: 'Keep updating as tokens change (Ctrl-C to stop)' })
      .example('$0 status --db http://127.0.0.1:5984/lofar', 'One table of progress')
      .example('$0 status --obsid L229507 --watch', 'Follow one observation live') as unknown as Argv<StatusArgs>,
  handler: async (args) => {
    const filter = checkFilter({ obsid: args.obsid, step: args.step });
    const pool = poolFromArgs(args);
    const reader = readerFromPool(pool);
    const show = async () => {
      const summary = await statusSummary(reader, filter, { pilots: () => pilotCountsFor(pool) });
      const runs = await activeRunSummaries(pool, { obsid: filter.obsid ?? undefined });
      if (args.json) printJson(runs.length ? { ...summary, pipelines: runs } : summary);
      else printLine([renderStatus(summary, table), ...runs.map((r) => renderRun(r, table))].join('\n\n'));
    };
    if (!args.watch) return show();
    await watch(reader, args.json, show);
  },
};

async function watch(reader: PoolReader, json: boolean, show: () => Promise<void>): Promise<void> {
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
  await watchChanges(reader, {
    signal: controller.signal,
    onChange: redraw,
    onError: (err) => warn(`changes feed failed (${(err as Error).message}); retrying`),
  });
  await running;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
}

function warn(message: string): void {
  process.stderr.write(redactText(`warning: ${message}\n`));
}
