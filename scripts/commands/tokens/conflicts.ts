/** `tokenpool tokens conflicts`: tokens a CouchDB cluster stored with two branches, and their resolution. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine, table } from '../../output.js';
import { resolveConflicts, type ConflictEntry } from '../../../server/tokens/conflicts.js';
import { withDb } from '../../../server/db-errors.js';

interface ConflictsArgs extends PoolArgs {
  resolve: boolean;
  json: boolean;
}

/** The table both `tokens conflicts` and `tokens scrub` print. */
export function conflictTable(entries: readonly ConflictEntry[]): string {
  const rows = entries.map((e) => [e.id, `${e.owner.status} (${e.owner.claim || '-'})`, e.losers.map((l) => `${l.status} (${l.claim || '-'})`).join(', '), e.recorded, e.action]);
  return table([['token', 'kept branch (claim)', 'other branches', 'attempts recorded', 'action'], ...rows]);
}

export const conflictsCommand: CommandModule<object, ConflictsArgs> = {
  command: 'conflicts',
  describe: 'List tokens stored with conflicting branches (CouchDB cluster); --resolve keeps the owning branch and records the others in its history',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('resolve', { type: 'boolean', default: false, describe: 'Resolve them (tokens scrub does too)' })
      .example('$0 tokens conflicts', 'Which tokens have a stored conflict, and which branch would stay')
      .example('$0 tokens conflicts --resolve --json', 'Resolve them all, machine-readable report') as unknown as Argv<ConflictsArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const entries = await withDb(pool, 'resolve stored conflicts', () => resolveConflicts(pool, { dryRun: !args.resolve }), { role: 'tokenpool_agent' });
    if (args.json) return printJson({ resolved: args.resolve, conflicts: entries });
    printLine(`${entries.length} tokens with a stored conflict${entries.length && !args.resolve ? ' (resolve them with --resolve or tokens scrub)' : ''}`);
    if (entries.length) printLine(conflictTable(entries));
  },
};
