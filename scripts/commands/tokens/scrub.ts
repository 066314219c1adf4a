/** `tokenpool tokens scrub`: end the leases that ran out (crashed or cut-off agents) and resolve stored conflicts, on demand. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine, table } from '../../output.js';
import { sweepExpiredLeases } from '../../../server/lease.js';
import { withDb } from '../../../server/db-errors.js';
import { nowSeconds } from '../../../server/token.js';
import { resolveConflicts } from '../../../server/tokens/conflicts.js';
import { conflictTable } from './conflicts.js';
import { advanceAllRuns } from '../../../server/pipelines/runs.js';

interface ScrubArgs extends PoolArgs {
  'dry-run': boolean;
  json: boolean;
}

export const scrubCommand: CommandModule<object, ScrubArgs> = {
  command: 'scrub',
  describe: 'Give back tokens whose lease expired (todo, one more attempt counted, or error after max_attempts), resolve stored conflicts (tokens conflicts) and finish pipeline releases a crash left undone',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('dry-run', { type: 'boolean', default: false, describe: 'Report the expired leases, change nothing' })
      .example('$0 tokens scrub --dry-run', 'List tokens held by agents that stopped heartbeating') as unknown as Argv<ScrubArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const now = nowSeconds();
    const report = await withDb(pool, 'scrub expired leases', () => sweepExpiredLeases(pool.db, now, { dryRun: args['dry-run'] }), { role: 'tokenpool_agent' });
    const conflicts = await withDb(pool, 'resolve stored conflicts', () => resolveConflicts(pool, { dryRun: args['dry-run'] }), { role: 'tokenpool_agent' });
    // Releases of pipeline dependents that a crash between an outcome and its release left undone.
    const pipelines = args['dry-run'] ? null : await withDb(pool, 'advance pipeline runs', () => advanceAllRuns(pool), { role: 'tokenpool_agent' });
    if (args.json) return printJson({ dry_run: args['dry-run'], ...report, conflicts, ...(pipelines ? { pipelines } : {}) });
    const verb = args['dry-run'] ? 'would scrub' : 'scrubbed';
    printLine(`${verb} ${report.expired.length} expired leases${report.skipped ? ` (${report.skipped} changed meanwhile, left alone)` : ''}`);
    if (report.expired.length) {
      const rows = report.expired.map((e) => [e.id, e.attempt, e.owner, new Date(e.expired * 1000).toISOString(), e.to]);
      printLine(table([['token', 'attempt', 'owner', 'lease expired', args['dry-run'] ? 'would go to' : 'now'], ...rows]));
    }
    if (conflicts.length) {
      printLine(`${args['dry-run'] ? 'would resolve' : 'resolved'} ${conflicts.length} stored conflicts`);
      printLine(conflictTable(conflicts));
    }
    if (pipelines && (pipelines.released.length || pipelines.blocked.length || pipelines.unblocked.length)) {
      printLine(`pipeline runs: ${pipelines.released.length} tokens released, ${pipelines.blocked.length} blocked, ${pipelines.unblocked.length} unblocked`);
    }
  },
};
