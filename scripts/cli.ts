#!/usr/bin/env node
/** `tokenpool`: one CLI, one verb per module in ./commands (only the verb being run is loaded). */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { loadCommands } from './commands/index.js';
import { entryOptions, runEntry } from './entry.js';

const argv = hideBin(process.argv);
const commands = await loadCommands(argv);

const cli = entryOptions(yargs(argv))
  .scriptName('tokenpool')
  .usage('$0 <command> [options]\n\nA token pool (CouchDB) and pilot agent for LOFAR processing on the grid and on HPC.')
  // Every flag can also be set as TOKENPOOL_<FLAG> (e.g. TOKENPOOL_DB, TOKENPOOL_MAX_TIME).
  .env('TOKENPOOL')
  .option('json', { type: 'boolean', default: false, describe: 'Machine-readable JSON output' })
  .command(commands)
  .demandCommand(1, 'Name a command; see the list above.')
  .strict()
  .recommendCommands()
  .help()
  .alias('h', 'help')
  .version()
  .wrap(Math.min(110, process.stdout.columns ?? 100))
  .epilog('Every option can be set by an environment variable: --db is TOKENPOOL_DB, --max-time is TOKENPOOL_MAX_TIME.');

await runEntry(cli);
