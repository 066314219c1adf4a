/** What both entry points (the `tokenpool` CLI and the self-contained pilot) share around yargs. */
import type { Argv } from 'yargs';
import { reportFailure } from './output.js';

/** Settings read straight from the environment elsewhere (server/pool-options.ts, log.ts, output.ts). */
const ENV_ONLY = ['user', 'password', 'log-json', 'debug'];

/**
 * --log-level, plus hidden declarations of TOKENPOOL_* variables that are not flags, so that
 * .strict() does not take TOKENPOOL_USER, TOKENPOOL_PASSWORD, … for unknown options.
 */
export function entryOptions<T>(y: Argv<T>, envOnly: readonly string[] = []): Argv<T> {
  let out = y.option('log-level', {
    type: 'string',
    default: 'info',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    describe: 'Log verbosity (logs go to stderr)',
  }) as Argv<T>;
  for (const name of [...ENV_ONLY, ...envOnly]) out = out.option(name, { type: 'string', hidden: true }) as Argv<T>;
  return out;
}

/** Parses and runs: a usage error prints the help and exits 2; any other failure is reported once. */
export async function runEntry<T>(cli: Argv<T>): Promise<void> {
  cli.fail((msg, err, y) => {
    if (err) throw err;
    y.showHelp();
    process.stderr.write(`\nerror: ${msg}\n`);
    process.exitCode = 2;
  });
  try {
    await cli.parseAsync();
  } catch (err) {
    reportFailure(err);
  }
}
