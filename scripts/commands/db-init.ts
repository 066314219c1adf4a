/** `tokenpool db init`: create the pool database, install its design documents, set its roles. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine, table } from '../output.js';
import { initDatabase } from '../../server/setup.js';

interface InitArgs extends PoolArgs {
  guard?: boolean;
  json: boolean;
}

export const dbInitCommand: CommandModule<object, InitArgs> = {
  command: 'init',
  describe: 'Create the database (if missing), install the design documents and set _security; safe to re-run',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .option('guard', {
        type: 'boolean',
        describe:
          'Install the validate function: viewers read only, agents cannot delete tokens, malformed tokens refused for every writer. ' +
          'On Apache CouchDB it slows bulk loads about 2.5 x. --no-guard removes it; without either the pool keeps what it has (new pools: none)',
      })
      .example('$0 db init --db http://127.0.0.1:5984/lofar --credentials admin.json', 'Set up a pool (needs server-admin credentials)')
      .example('$0 db init --guard', 'Also enforce roles and the token schema in the database (for read-only viewer accounts)') as unknown as Argv<InitArgs>,
  handler: async (args) => {
    const report = await initDatabase(poolFromArgs(args), { guard: args.guard });
    if (args.json) return printJson(report);
    printLine(`${report.db}: database ${report.database}, security ${report.security}, guard ${report.guard ? 'on' : 'off'}`);
    printLine(table([['design document', 'action'], ...report.designDocs.map((d) => [d.id, d.action])]));
  },
};
