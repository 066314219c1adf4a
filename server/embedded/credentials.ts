/** The embedded server's admin account: created at first start, kept in a 0600 file in the data directory. */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { InputError } from '../errors.js';
import { registerSecret } from '../redact.js';

export interface AdminCredentials {
  name: string;
  password: string;
}

export const CREDENTIALS_FILE = 'admin.json';

export function loadOrCreateAdmin(dataDir: string): { credentials: AdminCredentials; file: string; created: boolean } {
  const file = path.join(dataDir, CREDENTIALS_FILE);
  let text: string | null = null;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new InputError(`cannot read the admin credentials file ${file}: ${(err as Error).message}`, 'Run the server as the user who owns the data directory.');
    }
  }
  if (text !== null) {
    const credentials = parseAdmin(file, text);
    fs.chmodSync(file, 0o600);
    registerSecret(credentials.password);
    return { credentials, file, created: false };
  }
  const credentials = { name: 'admin', password: randomBytes(18).toString('base64url') };
  registerSecret(credentials.password);
  // O_EXCL: two servers started on one directory at once must not overwrite each other's password.
  fs.writeFileSync(file, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return { credentials, file, created: true };
}

function parseAdmin(file: string, text: string): AdminCredentials {
  const hint = `Repair it to {"name": "...", "password": "..."}, or move it away to have a new admin password made (the databases are kept).`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InputError(`the admin credentials file ${file} is not valid JSON (${(err as Error).message})`, hint);
  }
  const c = parsed as Partial<AdminCredentials> | null;
  if (!c || typeof c.name !== 'string' || typeof c.password !== 'string' || !c.name || !c.password) {
    throw new InputError(`the admin credentials file ${file} must hold non-empty "name" and "password" strings`, hint);
  }
  return { name: c.name, password: c.password };
}
