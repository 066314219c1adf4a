/** `tokenpool db user add|list`: accounts with a tokenpool role; passwords go to files, never to the terminal. */
import fs from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { printJson, printLine, table } from '../output.js';
import { InputError } from '../../server/errors.js';
import { ROLES, type RoleName } from '../../server/security.js';
import { generatePassword, listUsers, readPasswordFile, upsertUser, writeCredentialsFile } from '../../server/users.js';

interface AddArgs extends PoolArgs {
  name: string;
  role: RoleName;
  'password-file'?: string;
  out?: string;
  force: boolean;
  json: boolean;
}

const addCommand: CommandModule<object, AddArgs> = {
  command: 'add <name>',
  describe: 'Create a user (or update its password and role); needs server-admin credentials',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('name', { type: 'string', demandOption: true, describe: 'User name' })
      .option('role', { choices: Object.keys(ROLES), demandOption: true, describe: `agent (${ROLES.agent}: claims and updates tokens), viewer (${ROLES.viewer}: reads), manager (${ROLES.manager}: everything)` })
      .option('password-file', { type: 'string', describe: 'Take the password from the first line of this file (default: generate one)' })
      .option('out', { type: 'string', describe: 'Write a 0600 credentials file {"url","name","password"} for --credentials' })
      .option('force', { type: 'boolean', default: false, describe: 'Overwrite an existing --out file' })
      .example('$0 db user add pilot --role agent --out pilot.json --db URL --credentials admin.json', 'An account for pilot jobs') as unknown as Argv<AddArgs>,
  handler: async (args) => {
    if (!args['password-file'] && !args.out) {
      throw new InputError('a generated password needs --out FILE (it is never printed)', 'Pass --out pilot.json, or --password-file FILE to set a password you chose.');
    }
    if (args.out && !args.force && fs.existsSync(args.out)) {
      throw new InputError(`${args.out} exists`, 'Pass --force to overwrite it, or choose another --out file.');
    }
    const password = args['password-file'] ? readPasswordFile(args['password-file']) : generatePassword();
    const pool = poolFromArgs(args);
    const action = await upsertUser(pool, args.name, args.role, password);
    if (args.out) writeCredentialsFile(args.out, { url: pool.displayUrl, name: args.name, password });
    const result = { name: args.name, role: ROLES[args.role], action, credentials_file: args.out ?? null };
    if (args.json) return printJson(result);
    printLine(`user ${args.name} ${action} with role ${ROLES[args.role]}` + (args.out ? `; credentials in ${args.out} (mode 0600)` : ''));
  },
};

interface ListArgs extends PoolArgs {
  json: boolean;
}

const listCommand: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'Users holding a tokenpool role; needs server-admin credentials',
  builder: (y: Argv) => withPoolOptions(y) as unknown as Argv<ListArgs>,
  handler: async (args) => {
    const users = await listUsers(poolFromArgs(args));
    if (args.json) return printJson(users);
    printLine(table([['name', 'roles'], ...users.map((u) => [u.name, u.roles.join(', ')])]));
  },
};

export const dbUserCommand: CommandModule = {
  command: 'user <command>',
  describe: 'Manage pool accounts (agent, viewer, manager)',
  builder: (y: Argv) => y.command(addCommand).command(listCommand).demandCommand(1, 'Name a subcommand: add or list.'),
  handler: () => undefined,
};
