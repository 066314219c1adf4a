/** Attaching a file (a parset, a SURL list, a log) to a token, with its content type guessed from the name. */
import fs from 'node:fs';
import path from 'node:path';
import type { Pool } from '../client.js';
import { InputError, StateError } from '../errors.js';
import { isConflict, withDb } from '../db-errors.js';
import { ROLES } from '../security.js';
import { getToken } from './show.js';

const TYPES: Record<string, string> = {
  '.parset': 'text/plain',
  '.txt': 'text/plain',
  '.log': 'text/plain',
  '.out': 'text/plain',
  '.err': 'text/plain',
  '.cfg': 'text/plain',
  '.sh': 'text/x-shellscript',
  '.py': 'text/x-python',
  '.json': 'application/json',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.xml': 'application/xml',
  '.tar': 'application/x-tar',
  '.gz': 'application/gzip',
  '.tgz': 'application/gzip',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.pdf': 'application/pdf',
};

export function contentTypeOf(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/** Largest attachment we store: logs and parsets belong in a token, data products do not. */
export const MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024;

export async function attachFile(pool: Pool, id: string, file: string, name = path.basename(file)): Promise<{ name: string; content_type: string; length: number; rev: string }> {
  let data: Buffer;
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new InputError(`${file} is not a file`);
    if (stat.size > MAX_ATTACHMENT_BYTES) throw new InputError(`${file} is ${stat.size} bytes; attachments are limited to ${MAX_ATTACHMENT_BYTES} bytes`, 'Store large files next to the data and put their URL in the token.');
    data = fs.readFileSync(file);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!name || name.startsWith('_') || name.includes('/')) throw new InputError(`attachment name ${JSON.stringify(name)} is not usable`, 'Give --name without "/" and not starting with "_".');
  const content_type = contentTypeOf(name);
  for (let attempt = 0; ; attempt++) {
    const token = await getToken(pool, id);
    // A 409 means an agent updated the token between our read and write: read the new _rev and retry.
    const res = await withDb(
      pool,
      `attach ${name} to ${id}`,
      async () => {
        try {
          return await pool.db.attachment.insert(id, name, data, content_type, { rev: token._rev });
        } catch (err) {
          if (isConflict(err)) return null;
          throw err;
        }
      },
      { role: `${ROLES.agent} or ${ROLES.manager}` },
    );
    if (res) return { name, content_type, length: data.length, rev: res.rev };
    if (attempt >= 10) throw new StateError(`token ${id} kept changing while attaching ${name}; try again`);
  }
}
