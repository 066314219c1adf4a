/** `tokenpool failures`: failed tokens grouped by reason, with a representative log tail and the reset command. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine } from '../output.js';
import { readerFromPool } from '../../server/status/reader.js';
import { checkFilter } from '../../server/status/filter.js';
import { failureReport, type FailureReport } from '../../server/status/failure-report.js';
import { InputError } from '../../server/errors.js';

interface FailuresArgs extends PoolArgs {
  obsid?: string;
  step?: string;
  lines: number;
  json: boolean;
}

export const failuresCommand: CommandModule<object, FailuresArgs> = {
  command: 'failures',
  describe: 'Failed tokens grouped by reason and exit code, with log tails and the command to retry them',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('obsid', { type: 'string', describe: 'Only this observation, e.g. L229507' })
      .option('step', { type: 'string', describe: 'Only this pipeline step' })
      .option('lines', { type: 'number', default: 10, describe: 'Log lines to show per group' })
      .example('$0 failures --obsid L229507', 'Why did tokens of L229507 fail?') as unknown as Argv<FailuresArgs>,
  handler: async (args) => {
    const filter = checkFilter({ obsid: args.obsid, step: args.step });
    if (!Number.isInteger(args.lines) || args.lines < 0) throw new InputError('--lines must be a whole number ≥ 0');
    const pool = poolFromArgs(args);
    const poolFlags = [args.db ? `--db ${pool.displayUrl}` : '', args.credentials ? `--credentials ${args.credentials}` : ''].filter(Boolean).join(' ');
    const report = await failureReport(readerFromPool(pool), filter, { logLines: args.lines, poolFlags });
    if (args.json) printJson(report);
    else printLine(renderFailures(report));
  },
};

function renderFailures(r: FailureReport): string {
  if (r.groups.length === 0) return 'No failed tokens.';
  const out: string[] = [];
  for (const g of r.groups) {
    out.push(`${g.count} × ${g.obsid} ${g.step}: ${g.reason} (exit code ${g.exitCode ?? 'none'})`);
    out.push(`  examples: ${g.examples.join(', ')}`);
    if (g.lastError) out.push(`  last error of ${g.examples[0]}: ${g.lastError}`);
    if (g.log) {
      out.push(`  last ${g.log.lines.length} lines of ${g.log.name} of ${g.log.token}:`);
      for (const line of g.log.lines) out.push(`    | ${line}`);
    } else {
      out.push('  (no step output logged)');
    }
    out.push(`  retry them: ${g.reset}`, '');
  }
  if (r.omitted > 0) out.push(`… and ${r.omitted} smaller groups (narrow with --obsid/--step).`);
  return out.join('\n').trimEnd();
}
