#!/usr/bin/env node
/**
 * The self-contained pilot's entry (bundled by `npm run bundle` into dist/tokenpool-agent.mjs): only the
 * agent command, so that the bundle holds no server, native module or PouchDB code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { agentCommand } from './commands/agent.js';
import { entryOptions, runEntry } from './entry.js';

// Worker nodes have no pino-pretty (and no terminal worth it): always log JSON lines.
process.env.TOKENPOOL_LOG_JSON ??= '1';

// jdl/pilot.sh's own settings (TOKENPOOL_NODE, …) are environment-only too.
const cli = entryOptions(yargs(hideBin(process.argv)), ['node', 'node-search', 'bundle', 'scratch'])
  .scriptName('tokenpool-agent')
  .usage('$0 agent [options]\n\nThe tokenpool pilot agent, self-contained: run it with node, no installation needed.')
  .env('TOKENPOOL')
  .command(agentCommand)
  .demandCommand(1, 'Run: tokenpool-agent agent [options]')
  .strict()
  .help()
  .alias('h', 'help')
  .version(false);

await runEntry(cli);
