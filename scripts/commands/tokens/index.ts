/**
 * `tokenpool tokens <subcommand>`. Each subcommand is its own module; adding one (e.g. scrub.ts)
 * takes one import and one entry in `tokenSubcommands`.
 */
import type { Argv, CommandModule } from 'yargs';
import { addCommand } from './add.js';
import { listCommand } from './list.js';
import { showCommand } from './show.js';
import { resetCommand } from './reset.js';
import { deleteCommand } from './delete.js';
import { attachCommand } from './attach.js';
import { scrubCommand } from './scrub.js';
import { adoptCommand } from './adopt.js';
import { conflictsCommand } from './conflicts.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const tokenSubcommands: CommandModule<any, any>[] = [addCommand, listCommand, showCommand, resetCommand, deleteCommand, attachCommand, scrubCommand, conflictsCommand, adoptCommand];

export const tokensCommand: CommandModule = {
  command: 'tokens',
  describe: 'Create, list, show, reset, delete tokens, attach files to them, adopt PiCaS tokens',
  builder: (y: Argv) => y.command(tokenSubcommands).demandCommand(1, 'Name a tokens subcommand; see the list above.'),
  handler: () => undefined,
};
