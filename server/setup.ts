/**
 * `db init`: creates the database, installs the design documents and sets _security. Idempotent:
 * a design document is rewritten only when one of its definitions changed, because a rewrite of
 * a view makes CouchDB rebuild the index (minutes for a large pool). The guard (validate function)
 * is installed or removed only when asked; otherwise a pool keeps what it has.
 */
import type { Pool } from './client.js';
import { withDb, httpStatus, isConflict, SERVER_ADMIN } from './db-errors.js';
import { designDocs, guardDesignDoc, type DesignDoc } from './design.js';
import { securityObject, ROLES, type SecurityObject } from './security.js';

export type DesignAction = 'created' | 'updated' | 'unchanged' | 'removed';

export interface InitReport {
  /** Database URL without credentials */
  db: string;
  database: 'created' | 'existed';
  designDocs: { id: string; action: DesignAction }[];
  security: 'set' | 'unchanged';
  /** whether the pool has the validate function after init */
  guard: boolean;
}

export interface InitOptions {
  /** true installs (or updates) the validate function, false removes it, undefined keeps the pool's choice */
  guard?: boolean;
}

/** Fields of a design document that tokenpool owns; any others (added by hand) are kept. */
const MANAGED_FIELDS = ['language', 'views', 'validate_doc_update'] as const;

export async function initDatabase(pool: Pool, opts: InitOptions = {}): Promise<InitReport> {
  const database = await createDatabase(pool);
  const installed: InitReport['designDocs'] = [];
  for (const ddoc of designDocs()) installed.push({ id: ddoc._id, action: await installDesignDoc(pool, ddoc) });
  const guarded = await applyGuard(pool, opts.guard);
  if (guarded) installed.push(guarded);
  const security = await applySecurity(pool);
  const guard = guarded ? guarded.action !== 'removed' : false;
  return { db: pool.displayUrl, database, designDocs: installed, security, guard };
}

/** Installs, updates or removes the guard; null when the pool has none and none was asked for. */
async function applyGuard(pool: Pool, wanted: boolean | undefined): Promise<{ id: string; action: DesignAction } | null> {
  const ddoc = guardDesignDoc();
  if (wanted !== false) {
    const present = wanted === true || (await withDb(pool, 'read the guard', () => getOrNull(pool, ddoc._id), { role: ROLES.manager })) !== null;
    return present ? { id: ddoc._id, action: await installDesignDoc(pool, ddoc) } : null;
  }
  return withDb(
    pool,
    `remove ${ddoc._id}`,
    async () => {
      for (let attempt = 0; ; attempt++) {
        const existing = await getOrNull(pool, ddoc._id);
        if (!existing) return null;
        try {
          await pool.db.destroy(ddoc._id, existing._rev as string);
          return { id: ddoc._id, action: 'removed' as const };
        } catch (err) {
          if (!isConflict(err) || attempt >= 5) throw err;
        }
      }
    },
    { role: ROLES.manager },
  );
}

/** Looks before creating: a pool manager (a database admin, not a server admin) may re-run init on an existing pool. */
async function createDatabase(pool: Pool): Promise<InitReport['database']> {
  const exists = await withDb(pool, 'read the database', async () => {
    try {
      await pool.db.info();
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false;
      throw err;
    }
  });
  if (exists) return 'existed';
  return withDb(
    pool,
    'create the database',
    async () => {
      try {
        await pool.server.db.create(pool.dbName);
        return 'created';
      } catch (err) {
        if (httpStatus(err) === 412) return 'existed';
        throw err;
      }
    },
    { role: SERVER_ADMIN },
  );
}

async function installDesignDoc(pool: Pool, desired: DesignDoc): Promise<DesignAction> {
  return withDb(
    pool,
    `install ${desired._id}`,
    async () => {
      // A concurrent `db init` may write between our read and write: re-read and compare again.
      for (let attempt = 0; ; attempt++) {
        const existing = await getOrNull(pool, desired._id);
        if (existing && sameDefinitions(existing, desired)) return 'unchanged';
        const doc: Record<string, unknown> = { ...(existing ?? {}), _id: desired._id };
        for (const field of MANAGED_FIELDS) {
          if (desired[field] === undefined) delete doc[field];
          else doc[field] = desired[field];
        }
        // Views added by hand or by picasclient's add_view() stay; tokenpool's own are (re)written.
        if (desired.views) doc.views = { ...((existing?.views as object | undefined) ?? {}), ...desired.views };
        try {
          await pool.db.insert(doc as never);
          return existing ? 'updated' : 'created';
        } catch (err) {
          if (!isConflict(err) || attempt >= 5) throw err;
        }
      }
    },
    { role: ROLES.manager },
  );
}

async function getOrNull(pool: Pool, id: string): Promise<Record<string, unknown> | null> {
  try {
    return (await pool.db.get(id)) as unknown as Record<string, unknown>;
  } catch (err) {
    if (httpStatus(err) === 404) return null;
    throw err;
  }
}

export function sameDefinitions(existing: Record<string, unknown>, desired: DesignDoc): boolean {
  return MANAGED_FIELDS.every((f) => {
    if (f !== 'views' || !desired.views) return stableJson(existing[f]) === stableJson(desired[f]);
    const views = (existing.views ?? {}) as Record<string, unknown>;
    return Object.entries(desired.views).every(([name, view]) => stableJson(views[name]) === stableJson(view));
  });
}

/** JSON with sorted object keys, so that key order in a stored document does not count as a change. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  ) ?? 'undefined';
}

/** Adds tokenpool's roles to _security, keeping any names and roles already granted. */
async function applySecurity(pool: Pool): Promise<InitReport['security']> {
  return withDb(
    pool,
    'set the database security',
    async () => {
      const current = (await pool.db.get('_security')) as unknown as Partial<SecurityObject>;
      const wanted = securityObject();
      const merged: SecurityObject = {
        admins: union(current.admins, wanted.admins),
        members: union(current.members, wanted.members),
      };
      if (stableJson(merged) === stableJson({ admins: current.admins, members: current.members })) return 'unchanged';
      await pool.server.request({ db: pool.dbName, path: '_security', method: 'PUT', body: { ...current, ...merged } });
      return 'set';
    },
    { role: ROLES.manager },
  );
}

function union(a: { names?: string[]; roles?: string[] } | undefined, b: { names: string[]; roles: string[] }) {
  return {
    names: [...new Set([...(a?.names ?? []), ...b.names])],
    roles: [...new Set([...(a?.roles ?? []), ...b.roles])],
  };
}
