/** What both entry points (the `tokenpool` CLI and the self-contained pilot) share around yargs. */
import type { Argv, MiddlewareFunction } from 'yargs';
import { reportFailure } from './output.js';
import { explainUsageError } from './usage-error.js';

/** The part of yargs' instance a middleware is given that its typings leave out. */
interface ParsingYargs {
  getOptions(): { key: Record<string, unknown> };
}

const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (key: string) => `TOKENPOOL_${kebab(key).replace(/-/g, '_').toUpperCase()}`;

/**
 * --log-level, and `.env('TOKENPOOL')` without its trap: a TOKENPOOL_* variable that the command being
 * run does not take (TOKENPOOL_DB exported for the other verbs while `server` runs; TOKENPOOL_PASSWORD,
 * read from the environment by server/pool-options.ts) is left alone, not an unknown flag for .strict().
 */
export function entryOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('log-level', {
      type: 'string',
      default: 'info',
      choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
      describe: 'Log verbosity (logs go to stderr)',
    })
    .env('TOKENPOOL')
    .middleware(((argv: Record<string, unknown>, parsing: ParsingYargs) => {
      const known = parsing.getOptions().key;
      for (const key of Object.keys(argv)) {
        if (!(key in known) && !(kebab(key) in known) && process.env[envName(key)] !== undefined) delete argv[key];
      }
    }) as unknown as MiddlewareFunction<T>, true) as Argv<T>;
}

/** The flags on the command line, without dashes, values or `no-`. */
function givenFlags(): string[] {
  return process.argv
    .slice(2)
    .filter((a) => a.startsWith('--') && a.length > 2)
    .map((a) => a.slice(2).split('=')[0]!.replace(/^no-/, ''));
}

/**
 * Parses and runs. A usage error says what is wrong and shows the command's one example that fits
 * (usage-error.ts), exit 2; no command at all shows the list of commands. Any other failure is reported once.
 */
export async function runEntry<T>(cli: Argv<T>): Promise<void> {
  cli.fail((msg, err, y) => {
    if (err) throw err;
    let help = '';
    y.wrap(null);
    y.showHelp((text) => (help = text));
    // A command group or the CLI itself named without a subcommand: the list of commands is the answer.
    if (help.includes('\nCommands:\n')) {
      y.wrap(Math.min(110, process.stdout.columns ?? 100));
      y.showHelp();
      throw new UsageExit(`\nerror: ${msg}\n`);
    }
    // The help's first line is the usage: "tokenpool tokens add [FILE..]".
    const command = (help.split('\n')[0] ?? '').split(/\s+/).slice(1).filter((w) => /^[a-z][\w-]*$/.test(w)).join(' ');
    throw new UsageExit(explainUsageError({ message: msg, command, given: givenFlags() }, help));
  });
  try {
    await cli.parseAsync();
  } catch (err) {
    if (!(err instanceof UsageExit)) return reportFailure(err);
    process.stderr.write(err.message);
    process.exitCode = 2;
  }
}

/** Ends parsing after a usage error (yargs would otherwise go on to run the command). */
class UsageExit extends Error {}
