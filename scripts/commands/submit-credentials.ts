/**
 * The pilots' credentials: a 0600 JSON file {"url","name","password"} (server/client.ts) naming an
 * agent-role account. It travels as a file (grid sandbox) or is read from a shared file system
 * (Slurm); its contents never go into a script, JDL, argument list or log. Before submitting, we
 * check that it opens the pool and that the account can claim tokens and nothing more.
 */
import fs from 'node:fs';
import path from 'node:path';
import { openPool, readCredentialsFile } from '../../server/client.js';
import { InputError } from '../../server/errors.js';
import { translateDbError } from '../../server/db-errors.js';
import { redactUrl, secrets } from '../../server/redact.js';
import { ROLES } from '../../server/security.js';

export interface PilotCredentials {
  /** Absolute path of the file */
  file: string;
  /** Database URL from the file (no credentials in it) */
  url: string;
  name: string;
}

/** Reads and checks the file; with `login`, also logs in and checks the account's roles. */
export async function checkPilotCredentials(file: string, opts: { login: boolean }): Promise<PilotCredentials> {
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) {
    throw new InputError(
      `pilot credentials file not found: ${abs}`,
      'Make one with: tokenpool db user add pilot --role agent --out pilot.json --db URL --credentials ADMIN_FILE',
    );
  }
  const creds = readCredentialsFile(abs);
  if (!creds.url) {
    throw new InputError(
      `pilot credentials file ${abs} names no database`,
      'Add "url": "https://host:6984/dbname" beside "name" and "password": pilots read the database from this file.',
    );
  }
  if (redactUrl(creds.url) !== creds.url) {
    throw new InputError(`the "url" in ${abs} carries a name or password`, 'Keep the URL plain; put the account in "name" and "password".');
  }
  const pool = openPool({ credentials: abs });
  if (!opts.login) return { file: abs, url: pool.displayUrl, name: creds.name };
  let roles: string[];
  try {
    const session = (await pool.server.session()) as { userCtx?: { name?: string | null; roles?: string[] } };
    if (!session.userCtx?.name) throw Object.assign(new Error('not authenticated'), { statusCode: 401 });
    roles = session.userCtx.roles ?? [];
  } catch (err) {
    throw translateDbError(err, { url: pool.displayUrl, action: 'log in as the pilot account', authenticated: true });
  }
  if (roles.includes('_admin') || roles.includes(ROLES.manager)) {
    throw new InputError(
      `the pilot account "${creds.name}" is ${roles.includes('_admin') ? 'a server admin' : `a ${ROLES.manager}`}: pilots on worker nodes must not hold it`,
      `Make an account that can only claim and update tokens: tokenpool db user add pilot --role agent, and put it in ${abs}.`,
    );
  }
  if (!roles.includes(ROLES.agent)) {
    throw new InputError(
      `the pilot account "${creds.name}" lacks the role ${ROLES.agent}: its pilots could not claim tokens`,
      `Run: tokenpool db user add ${creds.name} --role agent`,
    );
  }
  return { file: abs, url: pool.displayUrl, name: creds.name };
}

/** Environment for a batch client: without tokenpool settings (a submitter's password must not reach a job). */
export function batchClientEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const known = [...secrets()];
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    // A WLCG token in the environment is a secret too: pilots get storage credentials as files.
    if (key.startsWith('TOKENPOOL_') || key === 'BEARER_TOKEN' || value === undefined) continue;
    if (known.some((s) => s.length >= 4 && value.includes(s))) continue;
    out[key] = value;
  }
  return out;
}

/** Agent arguments passed through to pilots (after `--`) must not carry a secret: they are visible in ps. */
export function checkPassThroughArgs(args: readonly string[]): string[] {
  for (const a of args) {
    if (/^--(password|user|credentials|db)(=|$)/.test(a)) {
      throw new InputError(
        `${a.split('=')[0]} cannot be passed to pilots on their command line`,
        'Pilots take the database and their account from --pilot-credentials FILE.',
      );
    }
    if (redactUrl(a) !== a) throw new InputError('an agent argument carries a URL with a name or password', 'Pilots take their account from --pilot-credentials FILE.');
  }
  return [...args];
}
