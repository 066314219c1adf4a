/**
 * CouchDB's per-database access rules, enforced by the front for authenticated non-admins: the engine's
 * own checks (pouchdb-security) miss several endpoints (e.g. `_index`, `_ensure_full_commit`).
 * A database whose _security names no members is open to every authenticated user, as on CouchDB.
 */
import type { UserCtx, Verdict } from './guard.js';
import { callEngine, type Upstream } from './upstream.js';

interface Group {
  names?: unknown;
  roles?: unknown;
}

export interface SecurityObject {
  admins?: Group;
  members?: Group;
}

export type Access = 'admin' | 'member' | 'none';

const CACHE_MS = 5_000;

function listOf(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function inGroup(user: UserCtx, group: Group | undefined): boolean {
  return (user.name !== null && listOf(group?.names).includes(user.name)) || listOf(group?.roles).some((r) => user.roles.includes(r));
}

export function accessOf(user: UserCtx, sec: SecurityObject): Access {
  if (user.roles.includes('_admin') || inGroup(user, sec.admins)) return 'admin';
  const open = listOf(sec.members?.names).length === 0 && listOf(sec.members?.roles).length === 0;
  return open || inGroup(user, sec.members) ? 'member' : 'none';
}

/** What a request inside a database needs beyond membership: database admin rights. */
export function needsDbAdmin(method: string, segments: string[], destination?: string): boolean {
  const [, second] = segments;
  if (method === 'COPY' && destination !== undefined && safeDecode(destination.split('?')[0]!).startsWith('_design')) return true;
  if (second === '_security') return method === 'PUT';
  if (second === '_compact' || second === '_view_cleanup' || second === '_purge') return true;
  // Design documents hold code: CouchDB lets only database admins write them.
  const write = method !== 'GET' && method !== 'HEAD';
  return write && second === '_design';
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export class SecurityCache {
  private readonly cache = new Map<string, { sec: SecurityObject | null; until: number }>();

  constructor(
    private readonly up: Upstream,
    private readonly adminAuth: string,
  ) {}

  forget(db: string): void {
    this.cache.delete(db);
  }

  forgetAll(): void {
    this.cache.clear();
  }

  /** The database's security object; null when the database does not exist (the engine then answers 404). */
  async get(db: string): Promise<SecurityObject | null> {
    const hit = this.cache.get(db);
    if (hit && hit.until > Date.now()) return hit.sec;
    const reply = await callEngine(this.up, 'GET', `/${encodeURIComponent(db)}/_security`, { authorization: this.adminAuth });
    let sec: SecurityObject | null = null;
    if (reply.status === 200) sec = JSON.parse(reply.body) as SecurityObject;
    else if (reply.status !== 404) throw new Error(`engine answered ${reply.status} to GET _security`);
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(db, { sec, until: Date.now() + CACHE_MS });
    return sec;
  }

  /** Null when the user may make this request; a 403 otherwise. */
  async check(user: UserCtx, method: string, segments: string[], destination?: string): Promise<Verdict | null> {
    const sec = await this.get(segments[0]!);
    if (sec === null) return null;
    const access = accessOf(user, sec);
    if (access === 'none') return { status: 403, error: 'forbidden', reason: 'You are not allowed to access this db.' };
    if (access === 'member' && needsDbAdmin(method, segments, destination)) {
      return { status: 403, error: 'forbidden', reason: 'You are not a db or server admin.' };
    }
    return null;
  }
}
