/** `tokenpool tokens list`: tokens matching a selection, newest state first per key range, bounded by --limit. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine, table } from '../../output.js';
import { InputError } from '../../../server/errors.js';
import { scanTokens } from '../../../server/tokens/select.js';
import type { Token } from '../../../server/token.js';
import { effectiveStatus, lastChange } from '../../../server/effective-status.js';
import { selectionFromArgs, withSelectionOptions, type SelectionArgs } from './selection.js';
import { formatTime } from './format.js';

interface ListArgs extends PoolArgs, SelectionArgs {
  limit: number;
  json: boolean;
}

export const listCommand: CommandModule<object, ListArgs> = {
  command: 'list [ids..]',
  describe: 'List tokens (by status, observation, step, age)',
  builder: (y: Argv) =>
    withSelectionOptions(withPoolOptions(y), { all: false })
      .positional('ids', { type: 'string', array: true, describe: 'Token ids' })
      .option('limit', { type: 'number', default: 100, describe: 'At most this many tokens' })
      .example('$0 tokens list --status error --obsid L229507', 'Failed tokens of one observation') as unknown as Argv<ListArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.limit) || args.limit < 1) throw new InputError(`--limit ${args.limit} must be a positive integer`);
    const sel = selectionFromArgs(args, { requireSome: false });
    const pool = poolFromArgs(args);
    const tokens: Token[] = [];
    let more = false;
    for await (const t of scanTokens(pool, sel, Math.min(args.limit + 1, 500))) {
      if (tokens.length === args.limit) {
        more = true;
        break;
      }
      tokens.push(t);
    }
    if (args.json) return printJson(tokens);
    if (!tokens.length) return printLine('no tokens match');
    printLine(
      table([
        ['id', 'status', 'attempts', 'updated', 'host', 'reason'],
        ...tokens.map((t) => [t._id, effectiveStatus(t), `${t.attempts}/${t.max_attempts}`, formatTime(lastChange(t)), t.hostname || '-', t.reason ?? '']),
      ]),
    );
    if (more) printLine(`(first ${args.limit}; raise --limit for more)`);
  },
};
