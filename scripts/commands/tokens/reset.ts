/** `tokenpool tokens reset`: put selected tokens back to todo (history kept; attempts only with --reset-attempts). */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine } from '../../output.js';
import { resetTokens } from '../../../server/tokens/reset.js';
import { selectionFromArgs, withSelectionOptions, type SelectionArgs } from './selection.js';
import { progressBar, type Progress } from './progress-bar.js';

interface ResetArgs extends PoolArgs, SelectionArgs {
  'reset-attempts': boolean;
  'dry-run': boolean;
  json: boolean;
}

export const resetCommand: CommandModule<object, ResetArgs> = {
  command: 'reset [ids..]',
  describe: 'Put tokens back to todo: lock, done, lease, exit code cleared; scrub_count + 1; history kept',
  builder: (y: Argv) =>
    withSelectionOptions(withPoolOptions(y), { all: true })
      .positional('ids', { type: 'string', array: true, describe: 'Token ids' })
      .option('reset-attempts', { type: 'boolean', default: false, describe: 'Also set attempts to 0 (give tokens that hit max_attempts new tries)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Report what would be reset, change nothing' })
      .example('$0 tokens reset --status error --obsid L229507', 'Retry the failures of one observation')
      .example('$0 tokens reset --status locked --older-than 2h', 'Free tokens of pilots that died (PiCaS-style reset)') as unknown as Argv<ResetArgs>,
  handler: async (args) => {
    const sel = selectionFromArgs(args, { requireSome: true });
    let bar: Progress | null = null;
    const report = await resetTokens(poolFromArgs(args), sel, {
      resetAttempts: args['reset-attempts'],
      dryRun: args['dry-run'],
      onProgress: (done, total) => {
        bar ??= progressBar(total, 'resetting', !args.json);
        bar.update(done);
      },
    }).finally(() => bar?.stop());
    if (args.json) return printJson({ ...report, dry_run: args['dry-run'] });
    if (args['dry-run']) {
      printLine(`dry run: would reset ${report.ids.length} tokens (${report.alreadyTodo} already todo)`);
      for (const id of report.ids.slice(0, 50)) printLine(`  ${id}`);
      if (report.ids.length > 50) printLine(`  … and ${report.ids.length - 50} more`);
      return;
    }
    const extra = [
      report.alreadyTodo ? `${report.alreadyTodo} already todo` : '',
      report.skipped ? `${report.skipped} changed meanwhile and no longer match` : '',
      report.conflicts ? `${report.conflicts} kept conflicting (run again)` : '',
      report.unblocked ? `${report.unblocked} pipeline tokens unblocked` : '',
    ].filter(Boolean);
    printLine(`reset ${report.changed} tokens to todo${extra.length ? ` (${extra.join(', ')})` : ''}`);
    if (report.conflicts) process.exitCode = 1;
  },
};
