/** What `submit slurm` and `submit grid` share: flags, the pilot credentials check, the pool for records. */
import type { Argv } from 'yargs';
import { openPool, readCredentialsFile, type Pool } from '../../server/client.js';
import { InputError } from '../../server/errors.js';
import { withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { DEFAULT_BUNDLE } from './submit-template.js';
import { checkPassThroughArgs, checkPilotCredentials, type PilotCredentials } from './submit-credentials.js';
import { storageOptions, type StorageArgs } from './submit-storage.js';

export interface CommonSubmitArgs extends PoolArgs, StorageArgs {
  count?: number;
  time: string;
  cpus: number;
  idleExit: number;
  jobName?: string;
  bundle: string;
  pilotCredentials?: string;
  dryRun: boolean;
  json?: boolean;
  _: (string | number)[];
}

export function commonSubmitOptions<T>(y: Argv<T>): Argv<T & CommonSubmitArgs> {
  return storageOptions(withPoolOptions(y))
    .option('pilot-credentials', {
      type: 'string',
      describe: 'The pilots\' 0600 JSON file {"url","name","password"} for an agent-role account (shipped in the grid sandbox; on a shared file system for Slurm)',
    })
    .option('count', { type: 'number', describe: 'Pilots to submit (default 1)' })
    .option('time', { type: 'string', default: '12:00:00', describe: 'Wall-clock limit per pilot (Slurm syntax: minutes, HH:MM:SS, D-HH:MM:SS); the agent\'s --max-time follows from it' })
    .option('cpus', { type: 'number', default: 1, describe: 'Cores per pilot' })
    .option('idle-exit', { type: 'number', default: 60, describe: 'A pilot exits after this many seconds with nothing to claim' })
    .option('job-name', { type: 'string', describe: 'Job name (default: tokenpool-<database>)' })
    .option('bundle', { type: 'string', default: DEFAULT_BUNDLE, describe: 'The self-contained agent (built with the project; built on demand in a checkout)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'Print what would be submitted; submit nothing' }) as unknown as Argv<T & CommonSubmitArgs>;
}

export interface Prepared {
  creds: PilotCredentials;
  /** The pool the pilots work on, opened with the submitter's account (records need more than an agent's role). */
  pool: Pool;
  /** Agent flags given after `--` */
  agentArgs: string[];
}

/** Checks the pilot credentials and opens the submitter's pool; `depth` is how many command words precede `--` arguments. */
export async function prepareSubmission(args: CommonSubmitArgs & { auto?: boolean }, depth: number): Promise<Prepared> {
  if (!args.pilotCredentials) {
    throw new InputError(
      'no pilot credentials given',
      'Pass --pilot-credentials FILE: a 0600 JSON file {"url": ..., "name": ..., "password": ...} for an account made with: tokenpool db user add pilot --role agent',
    );
  }
  const offline = args.dryRun && !args.auto;
  const creds = await checkPilotCredentials(args.pilotCredentials, { login: !offline });
  if (!Number.isFinite(args.idleExit) || args.idleExit < 0) throw new InputError(`--idle-exit must be a number of seconds, got ${args.idleExit}`);
  const agentArgs = checkPassThroughArgs(args._.slice(depth).map(String));
  const submitterFile = args.credentials ? readCredentialsFile(args.credentials) : null;
  const pool = openPool({
    db: args.db ?? submitterFile?.url ?? creds.url,
    credentials: args.credentials,
    user: process.env.TOKENPOOL_USER,
    password: process.env.TOKENPOOL_PASSWORD,
  });
  if (pool.displayUrl !== creds.url) {
    throw new InputError(
      `the pilots would work on ${creds.url} but submissions would be recorded in ${pool.displayUrl}`,
      'Make --db (or the url in --credentials) name the same database as the pilot credentials file.',
    );
  }
  return { creds, pool, agentArgs };
}
