/** `tokenpool tokens delete`: remove tokens (manager role); asks on a terminal, needs --yes otherwise. */
import readline from 'node:readline/promises';
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine } from '../../output.js';
import { InputError } from '../../../server/errors.js';
import { deleteTokens, selectForDelete } from '../../../server/tokens/delete.js';
import { selectionFromArgs, withSelectionOptions, type SelectionArgs } from './selection.js';
import { progressBar } from './progress-bar.js';

interface DeleteArgs extends PoolArgs, SelectionArgs {
  yes: boolean;
  'dry-run': boolean;
  json: boolean;
}

export const deleteCommand: CommandModule<object, DeleteArgs> = {
  command: 'delete [ids..]',
  describe: 'Delete tokens by id or selection (asks for confirmation; --yes when not on a terminal)',
  builder: (y: Argv) =>
    withSelectionOptions(withPoolOptions(y), { all: true })
      .positional('ids', { type: 'string', array: true, describe: 'Token ids' })
      .option('yes', { type: 'boolean', default: false, describe: 'Do not ask for confirmation' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Report what would be deleted, delete nothing' })
      .example('$0 tokens delete --obsid L229507 --step test --yes', 'Remove a test run') as unknown as Argv<DeleteArgs>,
  handler: async (args) => {
    const sel = selectionFromArgs(args, { requireSome: true });
    const pool = poolFromArgs(args);
    const ids = await selectForDelete(pool, sel);
    if (args['dry-run'] || ids.length === 0) {
      if (args.json) return printJson({ matched: ids.length, deleted: 0, ids, dry_run: args['dry-run'] });
      printLine(ids.length ? `dry run: would delete ${ids.length} tokens` : 'no tokens match; nothing deleted');
      for (const id of args['dry-run'] ? ids.slice(0, 50) : []) printLine(`  ${id}`);
      return;
    }
    if (!args.yes) await confirm(ids);
    const bar = progressBar(ids.length, 'deleting', !args.json);
    const report = await deleteTokens(pool, ids, sel, (n) => bar.update(n)).finally(() => bar.stop());
    if (args.json) return printJson({ matched: report.matched, deleted: report.changed, skipped: report.skipped, conflicts: report.conflicts, ids });
    printLine(`deleted ${report.changed} tokens` + (report.skipped ? ` (${report.skipped} changed meanwhile and no longer match)` : '') + (report.conflicts ? ` (${report.conflicts} kept conflicting; run again)` : ''));
    if (report.conflicts) process.exitCode = 1;
  },
};

async function confirm(ids: readonly string[]): Promise<void> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new InputError(`refusing to delete ${ids.length} tokens without confirmation`, 'Pass --yes (or run it on a terminal to be asked); --dry-run shows what would go.');
  }
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const sample = ids.slice(0, 3).join(', ') + (ids.length > 3 ? ', …' : '');
    const answer = await rl.question(`Delete ${ids.length} tokens (${sample})? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new InputError('not confirmed; nothing deleted');
  } finally {
    rl.close();
  }
}
