/** `tokenpool db`: setting up a pool database and its accounts. */
import type { Argv, CommandModule } from 'yargs';
import { dbInitCommand } from './db-init.js';
import { dbUserCommand } from './db-user.js';

export const dbCommand: CommandModule = {
  command: 'db',
  describe: 'Set up a pool: create the database and design documents, manage users',
  builder: (y: Argv) => y.command(dbInitCommand).command(dbUserCommand).demandCommand(1, 'Name a subcommand: init or user.'),
  handler: () => undefined,
};
