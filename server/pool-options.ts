/** The flags every command that talks to a pool shares: --db, --credentials (settable as TOKENPOOL_*). */
import type { Argv } from 'yargs';
import { openPool, type Pool } from './client.js';
import { DEFAULT_DB_TIMEOUT_S } from './deadline.js';
import { InputError } from './errors.js';

export interface PoolArgs {
  db?: string;
  credentials?: string;
  dbTimeout?: number;
}

export function withPoolOptions<T>(y: Argv<T>): Argv<T & PoolArgs> {
  return y
    .option('db', { type: 'string', describe: 'Database URL, e.g. http://127.0.0.1:5984/lofar (TOKENPOOL_DB)' })
    .option('credentials', {
      type: 'string',
      describe: 'A 0600 JSON file {"name","password"[,"url"]} (TOKENPOOL_CREDENTIALS); or set TOKENPOOL_USER and TOKENPOOL_PASSWORD',
    })
    .option('db-timeout', {
      type: 'number',
      describe: `Seconds a database request may go without an answer before the server is asked whether it is alive; no answer to that either fails the request (TOKENPOOL_DB_TIMEOUT, default ${DEFAULT_DB_TIMEOUT_S})`,
    }) as Argv<T & PoolArgs>;
}

export function poolFromArgs(args: PoolArgs): Pool {
  return openPool({
    db: args.db,
    credentials: args.credentials,
    user: process.env.TOKENPOOL_USER,
    password: process.env.TOKENPOOL_PASSWORD,
    dbTimeoutS: checkDbTimeout(args.dbTimeout),
  });
}

export function checkDbTimeout(s: number | undefined): number | undefined {
  if (s === undefined) return undefined;
  if (!Number.isFinite(s) || s <= 0) throw new InputError(`--db-timeout ${s} is not a number of seconds above 0`, 'e.g. --db-timeout 30');
  return s;
}
