#!/usr/bin/env node
/**
 * The self-contained pilot's entry (bundled by `npm run bundle` into dist/tokenpool-agent.mjs): only the
 * agent command, so that the bundle holds no server, native module or PouchDB code.
 */
import { applyAgentV8Settings } from '../agent/v8-settings.js';

// As in cli.ts: before the other modules load (pilot.sh also starts node with a small young generation).
applyAgentV8Settings();

const [{ default: yargs }, { hideBin }, { agentCommand }, { entryOptions, runEntry }] = await Promise.all([
  import('yargs'),
  import('yargs/helpers'),
  import('./commands/agent.js'),
  import('./entry.js'),
]);

// Worker nodes have no pino-pretty (and no terminal worth it): always log JSON lines.
process.env.TOKENPOOL_LOG_JSON ??= '1';

// jdl/pilot.sh's own settings (TOKENPOOL_NODE, …) are environment-only: entryOptions leaves them alone.
const cli = entryOptions(yargs(hideBin(process.argv)))
  .scriptName('tokenpool-agent')
  .usage('$0 agent [options]\n\nThe tokenpool pilot agent, self-contained: run it with node, no installation needed.')
  .command(agentCommand)
  .demandCommand(1, 'Run: tokenpool-agent agent [options]')
  .strict()
  .help()
  .alias('h', 'help')
  .version(false);

await runEntry(cli);
