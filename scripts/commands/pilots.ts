/** `tokenpool pilots`: the pool's submission records with how many pilots are queued, running, finished. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine, table } from '../output.js';
import { activeSubmissionStates, listSubmissions, type PilotCounts } from '../../server/submissions.js';

interface PilotsArgs extends PoolArgs {
  limit: number;
  json: boolean;
}

export const pilotsCommand: CommandModule<object, PilotsArgs> = {
  command: 'pilots',
  describe: 'List pilot submissions and their pilots queued / running / finished',
  builder: (y: Argv) =>
    withPoolOptions(y).option('limit', { type: 'number', default: 50, describe: 'Show this many submissions, newest first' }) as unknown as Argv<PilotsArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const [all, active] = await Promise.all([listSubmissions(pool, { limit: args.limit }), activeSubmissionStates(pool)]);
    const live = new Map(active.map((s) => [s.submission._id, s.counts]));
    const rows = all.map((s) => {
      const counts: PilotCounts = live.get(s._id) ?? { queued: 0, running: 0, finished: s.count, unknown: 0 };
      return { ...s, pilots: counts };
    });
    if (args.json) {
      printJson(rows);
      return;
    }
    if (rows.length === 0) {
      printLine('no pilots submitted to this pool yet (tokenpool submit slurm|grid)');
      return;
    }
    printLine(
      table([
        ['submitted', 'backend', 'job id', 'pilots', 'queued', 'running', 'finished', 'unknown', 'by', 'auto'],
        ...rows.map((r) => [
          new Date(r.time * 1000).toISOString().replace('T', ' ').slice(0, 19),
          r.backend,
          r.job_ids.length > 1 ? `${r.job_ids[0]} (+${r.job_ids.length - 1})` : (r.job_ids[0] ?? ''),
          r.count,
          r.pilots.queued,
          r.pilots.running,
          r.pilots.finished,
          r.pilots.unknown,
          r.who,
          r.auto ? 'yes' : '',
        ]),
      ]),
    );
  },
};
