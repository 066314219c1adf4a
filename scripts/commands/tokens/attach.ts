/** `tokenpool tokens attach ID FILE`: store a parset (or another small file) with a token. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine } from '../../output.js';
import { attachFile } from '../../../server/tokens/attach.js';
import { formatBytes } from './format.js';

interface AttachArgs extends PoolArgs {
  id: string;
  file: string;
  name?: string;
  json: boolean;
}

export const attachCommand: CommandModule<object, AttachArgs> = {
  command: 'attach <id> <file>',
  describe: 'Attach a file (e.g. a parset) to a token; the content type follows the name',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('id', { type: 'string', demandOption: true, describe: 'Token id' })
      .positional('file', { type: 'string', demandOption: true, describe: 'File to attach' })
      .option('name', { type: 'string', describe: 'Attachment name (default: the file name)' }) as unknown as Argv<AttachArgs>,
  handler: async (args) => {
    const res = await attachFile(poolFromArgs(args), args.id, args.file, args.name);
    if (args.json) return printJson({ id: args.id, ...res });
    printLine(`attached ${res.name} (${res.content_type}, ${formatBytes(res.length)}) to ${args.id}`);
  },
};
