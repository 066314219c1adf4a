/**
 * Pool accounts: CouchDB users (server-wide, in _users) holding one tokenpool role. A role takes
 * effect in every database whose _security lists it, i.e. every pool set up by `db init`.
 */
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Pool } from './client.js';
import { InputError } from './errors.js';
import { isNotFound, withDb, SERVER_ADMIN } from './db-errors.js';
import { registerSecret } from './redact.js';
import { ROLES, type RoleName } from './security.js';

export interface UserInfo {
  name: string;
  roles: string[];
}

const USER_PREFIX = 'org.couchdb.user:';
const TOKENPOOL_ROLES = new Set<string>(Object.values(ROLES));

export function checkUserName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]*$/.test(name) || name.length > 64) {
    throw new InputError(`user name ${JSON.stringify(name)} is not usable`, 'Use letters, digits, ".", "_", "@" or "-" (at most 64 characters).');
  }
}

export function generatePassword(): string {
  const password = randomBytes(24).toString('base64url');
  registerSecret(password);
  return password;
}

/** First line of a file (a password manager export, a secret mounted by Kubernetes). */
export function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read password file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const password = text.split(/\r?\n/)[0]!.trim();
  if (password.length < 8) throw new InputError(`the password in ${file} is shorter than 8 characters`);
  registerSecret(password);
  return password;
}

/** Creates the user or updates its password and tokenpool role (other roles it holds are kept). */
export async function upsertUser(pool: Pool, name: string, role: RoleName, password: string): Promise<'created' | 'updated'> {
  checkUserName(name);
  const id = USER_PREFIX + name;
  return withDb(
    pool,
    `create or update user ${name}`,
    async () => {
      let existing: Record<string, unknown> | null = null;
      try {
        existing = (await pool.server.request({ db: '_users', doc: id })) as Record<string, unknown>;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const otherRoles = ((existing?.roles as string[] | undefined) ?? []).filter((r) => !TOKENPOOL_ROLES.has(r));
      const doc = {
        ...(existing ?? {}),
        _id: id,
        name,
        type: 'user',
        roles: [...otherRoles, ROLES[role]],
        password,
      };
      await pool.server.request({ db: '_users', doc: id, method: 'PUT', body: doc });
      return existing ? 'updated' : 'created';
    },
    { role: SERVER_ADMIN },
  );
}

export async function listUsers(pool: Pool): Promise<UserInfo[]> {
  return withDb(
    pool,
    'list users',
    async () => {
      const res = (await pool.server.request({
        db: '_users',
        path: '_all_docs',
        qs: { include_docs: true, startkey: USER_PREFIX, endkey: USER_PREFIX + '\ufff0' },
      })) as { rows: { doc?: { name?: string; roles?: string[] } }[] };
      return res.rows
        .map((r) => ({ name: r.doc?.name ?? '', roles: r.doc?.roles ?? [] }))
        .filter((u) => u.name && u.roles.some((r) => TOKENPOOL_ROLES.has(r)));
    },
    { role: SERVER_ADMIN },
  );
}

/** A credentials file a pilot or a scientist passes as --credentials: 0600, never world-readable. */
export function writeCredentialsFile(file: string, creds: { url: string; name: string; password: string }): void {
  try {
    // Narrow the mode before writing: an existing file may have been readable by others.
    const fd = fs.openSync(file, 'w', 0o600);
    try {
      fs.fchmodSync(fd, 0o600);
      fs.writeSync(fd, JSON.stringify(creds, null, 2) + '\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    throw new InputError(`cannot write credentials file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
