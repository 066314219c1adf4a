#!/usr/bin/env node
/** `tokenpool`: one CLI, one verb per module in ./commands (only the verb being run is loaded). */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { loadCommands } from './commands/index.js';
import { reportFailure } from './output.js';

const argv = hideBin(process.argv);
const commands = await loadCommands(argv);

const cli = yargs(argv)
  .scriptName('tokenpool')
  .usage('$0 <command> [options]\n\nA token pool (CouchDB) and pilot agent for LOFAR processing on the grid and on HPC.')
  // Every flag can also be set as TOKENPOOL_<FLAG> (e.g. TOKENPOOL_DB, TOKENPOOL_MAX_TIME).
  .env('TOKENPOOL')
  .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output' })
  // Environment-only settings read elsewhere (pool-options.ts, log.ts, output.ts): declared so that
  // .strict() does not take TOKENPOOL_USER, TOKENPOOL_PASSWORD, … for unknown flags.
  .option('user', { type: 'string', hidden: true })
  .option('password', { type: 'string', hidden: true })
  .option('log-json', { type: 'string', hidden: true })
  .option('debug', { type: 'string', hidden: true })
  .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], describe: 'Log verbosity (logs go to stderr)' })
  .command(commands)
  .demandCommand(1, 'Name a command; see the list above.')
  .strict()
  .recommendCommands()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns ?? 100))
  .epilog('Every option can be set by an environment variable: --db is TOKENPOOL_DB, --max-time is TOKENPOOL_MAX_TIME.')
  .fail((msg, err, y) => {
    // Rethrown so that the catch around parseAsync reports it exactly once.
    if (err) throw err;
    else {
      y.showHelp();
      process.stderr.write(`\nerror: ${msg}\n`);
      process.exitCode = 2;
    }
  });

try {
  await cli.parseAsync();
} catch (err) {
  reportFailure(err);
}
