/** The flags every command that talks to a pool shares: --db, --credentials (settable as TOKENPOOL_*). */
import type { Argv } from 'yargs';
import { openPool, type Pool } from './client.js';

export interface PoolArgs {
  db?: string;
  credentials?: string;
}

export function withPoolOptions<T>(y: Argv<T>): Argv<T & PoolArgs> {
  return y
    .option('db', { type: 'string', describe: 'Database URL, e.g. http://127.0.0.1:5984/lofar (TOKENPOOL_DB)' })
    .option('credentials', {
      type: 'string',
      describe: 'A 0600 JSON file {"name","password"[,"url"]} (TOKENPOOL_CREDENTIALS); or set TOKENPOOL_USER and TOKENPOOL_PASSWORD',
    }) as Argv<T & PoolArgs>;
}

export function poolFromArgs(args: PoolArgs): Pool {
  return openPool({
    db: args.db,
    credentials: args.credentials,
    user: process.env.TOKENPOOL_USER,
    password: process.env.TOKENPOOL_PASSWORD,
  });
}
