/** One token in full: its fields, attachments (name, type, size) and attempt history. */
import type { Pool } from '../client.js';
import { StateError } from '../errors.js';
import { isNotFound, withDb } from '../db-errors.js';
import type { Token } from '../token.js';

export interface AttachmentInfo {
  name: string;
  content_type: string;
  length: number;
}

export async function getToken(pool: Pool, id: string): Promise<Token> {
  const doc = await withDb(pool, `read token ${id}`, async () => {
    try {
      return await pool.db.get(id);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  });
  if (!doc || doc.type !== 'token') {
    throw new StateError(`no token ${id} in ${pool.displayUrl}`, 'List the pool with: tokenpool tokens list');
  }
  return doc;
}

export function attachmentsOf(t: Pick<Token, '_attachments'>): AttachmentInfo[] {
  const stubs = (t._attachments ?? {}) as Record<string, { content_type?: string; length?: number }>;
  return Object.entries(stubs)
    .map(([name, a]) => ({ name, content_type: a.content_type ?? 'application/octet-stream', length: a.length ?? 0 }))
    .sort((a, b) => a.name.localeCompare(b.name));
}
