/** `tokenpool tokens adopt`: upgrade PiCaS-format tokens (picasclient, GRID_LRT) in place to tokenpool tokens. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine, table } from '../../output.js';
import { adoptTokens, type AdoptReport } from '../../../server/tokens/adopt.js';
import { InputError } from '../../../server/errors.js';
import { checkSelectionValues } from '../../../server/tokens/select.js';
import { progressBar, type Progress } from './progress-bar.js';

interface AdoptArgs extends PoolArgs {
  ids?: string[];
  obsid?: string;
  step?: string;
  command?: string;
  'include-locked': boolean;
  'dry-run': boolean;
  json: boolean;
}

export const adoptCommand: CommandModule<object, AdoptArgs> = {
  command: 'adopt [ids..]',
  describe: 'Turn PiCaS-format tokens (picasclient, GRID_LRT) into tokenpool tokens in place, keeping their fields',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('ids', { type: 'string', array: true, describe: 'Token ids (default: every PiCaS-format token)' })
      .option('obsid', { type: 'string', describe: 'Observation for tokens without OBSID and without LOFAR SURLs, e.g. L229507' })
      .option('step', { type: 'string', describe: 'Step for tokens without PIPELINE_STEP' })
      .option('command', { type: 'string', describe: "Command the agent runs for these tokens (default: the token's own command field)" })
      .option('include-locked', { type: 'boolean', default: false, describe: 'Also take over locked tokens as todo (only when their PiCaS pilots are gone)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Check and report what would be adopted, change nothing' })
      .example('$0 tokens adopt --dry-run', 'What adopt would do with the PiCaS tokens in the pool')
      .example('$0 tokens adopt --obsid L229507 --step cal1 --command ./process_task.sh', 'Adopt picasclient tokens that carry no LOFAR fields') as unknown as Argv<AdoptArgs>,
  handler: async (args) => {
    checkSelectionValues({ obsid: args.obsid });
    if (args.step !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(args.step)) {
      throw new InputError(`--step ${JSON.stringify(args.step)} is not a step name`, 'Step names use letters, digits, "_", "." or "-".');
    }
    let bar: Progress | null = null;
    const report = await adoptTokens(poolFromArgs(args), {
      ids: args.ids,
      obsid: args.obsid,
      step: args.step,
      command: args.command,
      includeLocked: args['include-locked'],
      dryRun: args['dry-run'],
      onProgress: (done, total) => {
        bar ??= progressBar(total, 'adopting', !args.json);
        bar.update(done);
      },
    }).finally(() => bar?.stop());
    if (args.json) printJson({ dry_run: args['dry-run'], ...report });
    else printReport(report, args['dry-run']);
    if (report.conflicts.length) process.exitCode = 1;
  },
};

function printReport(r: AdoptReport, dryRun: boolean): void {
  if (r.candidates === 0 && !r.adopted.length && !r.skipped.length) return printLine('no PiCaS-format tokens in the pool: nothing to adopt');
  const byStatus = new Map<string, number>();
  for (const a of r.adopted) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
  const counts = [...byStatus].map(([s, n]) => `${n} ${s}`).join(', ');
  printLine(`${dryRun ? 'dry run: would adopt' : 'adopted'} ${r.adopted.length} PiCaS tokens${counts ? ` (${counts})` : ''}`);
  if (r.skipped.length) {
    printLine(`skipped ${r.skipped.length}:`);
    printLine(table([['token', 'reason'], ...r.skipped.slice(0, 50).map((s) => [s.id, s.reason])]));
    if (r.skipped.length > 50) printLine(`… and ${r.skipped.length - 50} more (--json lists all)`);
  }
  if (r.conflicts.length) printLine(`${r.conflicts.length} kept conflicting (a PiCaS pilot keeps writing them): run adopt again`);
}
