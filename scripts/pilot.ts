#!/usr/bin/env node
/**
 * The self-contained pilot's entry (bundled by `npm run bundle` into dist/tokenpool-agent.mjs): only the
 * agent command, so that the bundle holds no server, native module or PouchDB code.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { agentCommand } from './commands/agent.js';
import { reportFailure } from './output.js';

// Worker nodes have no pino-pretty (and no terminal worth it): always log JSON lines.
process.env.TOKENPOOL_LOG_JSON ??= '1';

const cli = yargs(hideBin(process.argv))
  .scriptName('tokenpool-agent')
  .usage('$0 agent [options]\n\nThe tokenpool pilot agent, self-contained: run it with node, no installation needed.')
  .env('TOKENPOOL')
  .option('log-level', { type: 'string', default: 'info', choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], describe: 'Log verbosity (logs go to stderr)' })
  // Environment-only settings (pool-options.ts, log.ts, output.ts and jdl/pilot.sh's own): declared so
  // that .strict() does not take TOKENPOOL_NODE, TOKENPOOL_BUNDLE, … for unknown flags.
  .option('user', { type: 'string', hidden: true })
  .option('password', { type: 'string', hidden: true })
  .option('log-json', { type: 'string', hidden: true })
  .option('debug', { type: 'string', hidden: true })
  .option('node', { type: 'string', hidden: true })
  .option('node-search', { type: 'string', hidden: true })
  .option('bundle', { type: 'string', hidden: true })
  .option('scratch', { type: 'string', hidden: true })
  .command(agentCommand)
  .demandCommand(1, 'Run: tokenpool-agent agent [options]')
  .strict()
  .help()
  .alias('h', 'help')
  .version(false)
  .fail((msg, err, y) => {
    if (err) reportFailure(err);
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
