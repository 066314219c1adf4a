/** The embedded server's admin account: created at first start, kept in a 0600 file in the data directory. */
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

export interface AdminCredentials {
  name: string;
  password: string;
}

export const CREDENTIALS_FILE = 'admin.json';

export function loadOrCreateAdmin(dataDir: string): { credentials: AdminCredentials; file: string; created: boolean } {
  const file = path.join(dataDir, CREDENTIALS_FILE);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    const credentials = JSON.parse(fs.readFileSync(file, 'utf8')) as AdminCredentials;
    if (typeof credentials.name !== 'string' || typeof credentials.password !== 'string') {
      throw new Error(`${file} must hold {"name": ..., "password": ...}`);
    }
    fs.chmodSync(file, 0o600);
    return { credentials, file, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const credentials = { name: 'admin', password: randomBytes(18).toString('base64url') };
  // O_EXCL: two servers started on one directory at once must not overwrite each other's password.
  fs.writeFileSync(file, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  return { credentials, file, created: true };
}
