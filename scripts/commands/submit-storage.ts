/**
 * The storage credentials pilots read data with, besides their pool account: the macaroons file
 * (`tokenpool stage --method stageit` writes it) and a WLCG bearer token file. Like the pilot
 * credentials they go as files, never as contents: Slurm pilots get their paths (a shared file
 * system, where a refresher on the login node can keep rewriting them and the agents re-read them
 * before every transfer); grid pilots get 0600 copies in the input sandbox.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Argv } from 'yargs';
import { InputError } from '../../server/errors.js';
import { defaultMacaroonsFile } from '../../agent/node/credentials/macaroon-file.js';

export interface StorageArgs {
  macaroons?: string;
  bearerTokenFile?: string;
}

export interface StorageFiles {
  macaroons: string | null;
  bearerTokenFile: string | null;
}

export function storageOptions<T>(y: Argv<T>): Argv<T & StorageArgs> {
  return y
    .option('macaroons', { type: 'string', describe: 'Macaroons file for the pilots (0600; default ~/.tokenpool/macaroons.json when it exists, as tokenpool stage writes it)' })
    .option('bearer-token-file', { type: 'string', describe: 'WLCG bearer token file for the pilots (0600): Slurm pilots get its path as BEARER_TOKEN_FILE, grid pilots a copy' }) as unknown as Argv<T & StorageArgs>;
}

/** The files, checked to exist and to be readable by their owner only. */
export function storageFiles(args: StorageArgs): StorageFiles {
  const fallback = defaultMacaroonsFile();
  const macaroons = args.macaroons ?? (fs.existsSync(fallback) ? fallback : undefined);
  return { macaroons: macaroons ? checked(macaroons, '--macaroons') : null, bearerTokenFile: args.bearerTokenFile ? checked(args.bearerTokenFile, '--bearer-token-file') : null };
}

function checked(file: string, flag: string): string {
  const abs = path.resolve(file);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(abs);
  } catch {
    throw new InputError(`${flag} ${abs}: no such file`);
  }
  if ((stat.mode & 0o077) !== 0) throw new InputError(`${flag} ${abs} is readable by others: it holds credentials`, `Run: chmod 600 ${abs}`);
  return abs;
}
