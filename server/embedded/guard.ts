/**
 * Which requests reach the engine. express-pouchdb crashes on several requests from anonymous and
 * non-admin users (e.g. an anonymous `PUT /newdb` once an admin exists), and CouchDB 3 answers them
 * with 401/403 anyway, so the front refuses them itself with CouchDB's status codes and bodies.
 */

export interface UserCtx {
  name: string | null;
  roles: string[];
}

export interface Verdict {
  status: number;
  error: string;
  reason: string;
}

const ANONYMOUS_ALLOWED = new Set(['GET /', 'HEAD /', 'GET /_up', 'HEAD /_up', 'GET /_session', 'POST /_session', 'DELETE /_session', 'GET /_uuids']);

/** Server-wide endpoints only a server admin may use on CouchDB. */
const ADMIN_ONLY_TOP = new Set(['_config', '_node', '_replicate', '_restart', '_active_tasks', '_log', '_stats', '_db_updates', '_membership', '_cluster_setup', '_scheduler', '_utils', '_reshard', '_dbs', '_nodes']);

export function isAdmin(user: UserCtx): boolean {
  return user.roles.includes('_admin');
}

/** Splits a request path into decoded segments ('//x' yields an empty first segment, which we refuse). */
export function pathSegments(rawPath: string): string[] | null {
  const pathOnly = rawPath.split('?')[0] ?? '';
  if (pathOnly === '/' || pathOnly === '') return [];
  try {
    return pathOnly.replace(/^\//, '').replace(/\/$/, '').split('/').map((s) => decodeURIComponent(s));
  } catch {
    return null;
  }
}

export function judge(method: string, rawPath: string, user: UserCtx): Verdict | null {
  const segments = pathSegments(rawPath);
  if (segments === null || segments.some((s) => s === '')) {
    return { status: 400, error: 'bad_request', reason: 'Malformed request path: empty or undecodable segment.' };
  }
  const key = `${method} /${segments.join('/')}`;
  if (user.name === null) {
    if (ANONYMOUS_ALLOWED.has(key)) return null;
    return { status: 401, error: 'unauthorized', reason: 'Authentication required: send HTTP basic credentials.' };
  }
  if (isAdmin(user)) return null;
  const [top, second] = segments;
  if (top === undefined) return null;
  if (ADMIN_ONLY_TOP.has(top)) {
    return { status: 403, error: 'forbidden', reason: `You are not a server admin (${top} needs one).` };
  }
  if (top.startsWith('_')) {
    if (top === '_users') return judgeUsersDb(method, second, user);
    return null;
  }
  // Creating, deleting or compacting a database, and changing its _security, are admin operations.
  if (segments.length === 1 && method !== 'GET' && method !== 'HEAD' && method !== 'POST') {
    return { status: 403, error: 'forbidden', reason: 'You are not a server admin (creating or deleting a database needs one).' };
  }
  if (second === '_security' && method !== 'GET' && method !== 'HEAD') {
    return { status: 403, error: 'forbidden', reason: 'You are not a database or server admin.' };
  }
  if (second === '_compact' || second === '_view_cleanup' || second === '_purge') {
    return { status: 403, error: 'forbidden', reason: `You are not a database or server admin (${second} needs one).` };
  }
  return null;
}

/** Non-admins may only read and update their own user document. */
function judgeUsersDb(method: string, docId: string | undefined, user: UserCtx): Verdict | null {
  const own = `org.couchdb.user:${user.name}`;
  if (docId === own && (method === 'GET' || method === 'HEAD' || method === 'PUT')) return null;
  return { status: 403, error: 'forbidden', reason: 'Only admins may read or change other users.' };
}
