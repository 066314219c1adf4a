#!/usr/bin/env node
/** `tokenpool`: one CLI, one verb per module in ./commands (only the verb being run is loaded). */
import { applyAgentV8Settings } from '../agent/v8-settings.js';
import { commandLoaders, loadCommands } from './commands/index.js';

// The agent's V8 settings act on what is allocated after them: applied before any other module loads
// (hence the dynamic imports below). The first word naming a command is the verb (`--log-level debug agent`).
if (process.argv.slice(2).find((a) => Object.hasOwn(commandLoaders, a)) === 'agent') applyAgentV8Settings();

const [{ default: yargs }, { hideBin }, { entryOptions, runEntry }] = await Promise.all([import('yargs'), import('yargs/helpers'), import('./entry.js')]);

const argv = hideBin(process.argv);
const commands = await loadCommands(argv);

const cli = entryOptions(yargs(argv))
  .scriptName('tokenpool')
  .usage('$0 <command> [options]\n\nA token pool (CouchDB) and pilot agent for LOFAR processing on the grid and on HPC.')
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
