/**
 * Which requests reach the engine. express-pouchdb crashes on several requests (e.g. an anonymous
 * `PUT /newdb` once an admin exists, or `PUT /_session`, which it takes for creating a database named
 * `_session`), and CouchDB 3 answers them with 400/401/403/405 anyway, so the front refuses them itself
 * with CouchDB's status codes. Every rule here was found by test/server-fuzz.test.ts or is CouchDB's own.
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

const READ = ['GET', 'HEAD'];

/** Server endpoints every caller may use, and their methods. */
const OPEN_ENDPOINTS: Record<string, string[]> = {
  '': READ,
  _up: READ,
  _uuids: READ,
  _session: ['GET', 'HEAD', 'POST', 'DELETE'],
};

/**
 * Server endpoints that only a server admin may use on CouchDB, with the methods the engine serves on
 * them (none: not served here). The engine must not see the others: express-pouchdb takes an unknown
 * `PUT /_name` for creating a database of that name, and hangs or crashes on it.
 */
const ADMIN_ENDPOINTS: Record<string, string[]> = {
  _all_dbs: READ,
  _active_tasks: READ,
  _db_updates: READ,
  _log: READ,
  _stats: READ,
  _config: [],
  _node: [],
  _replicate: [],
  _restart: [],
  _membership: [],
  _cluster_setup: [],
  _scheduler: [],
  _utils: [],
  _reshard: [],
  _dbs: [],
  _nodes: [],
  _dbs_info: [],
};

/** System databases: names that start with an underscore yet are databases. */
const SYSTEM_DBS = new Set(['_users', '_replicator', '_global_changes']);

/** CouchDB's rule for database names. */
const DB_NAME = /^[a-z][a-z0-9_$()+/-]*$/;

/** Methods CouchDB serves on a database's own URL and on documents. */
const DB_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE'];
const DOC_METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'COPY', 'POST'];

/** Database endpoints (second segment) and the methods CouchDB serves on them. */
const DB_ENDPOINTS: Record<string, string[]> = {
  _all_docs: ['GET', 'HEAD', 'POST'],
  _design_docs: ['GET', 'HEAD', 'POST'],
  _local_docs: ['GET', 'HEAD', 'POST'],
  _bulk_docs: ['POST'],
  _bulk_get: ['POST'],
  _changes: ['GET', 'HEAD', 'POST'],
  _find: ['POST'],
  _explain: ['POST'],
  _index: ['GET', 'HEAD', 'POST', 'DELETE'],
  _revs_diff: ['POST'],
  _missing_revs: ['POST'],
  _revs_limit: ['GET', 'HEAD', 'PUT'],
  _security: ['GET', 'HEAD', 'PUT'],
  _ensure_full_commit: ['POST'],
  _compact: ['POST'],
  _view_cleanup: ['POST'],
  _purge: ['POST'],
};

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

const bad = (reason: string): Verdict => ({ status: 400, error: 'bad_request', reason });
const notAllowed = (allowed: string[]): Verdict => ({ status: 405, error: 'method_not_allowed', reason: `Only ${allowed.join(',')} allowed` });
const forbidden = (reason: string): Verdict => ({ status: 403, error: 'forbidden', reason });
const UNAUTHORIZED: Verdict = { status: 401, error: 'unauthorized', reason: 'Authentication required: send HTTP basic credentials.' };

export function judge(method: string, rawPath: string, user: UserCtx): Verdict | null {
  const segments = pathSegments(rawPath);
  if (segments === null || segments.some((s) => s === '' || s.includes('\0'))) {
    return bad('Malformed request path: empty or undecodable segment.');
  }
  const [top = ''] = segments;
  const admin = isAdmin(user);

  if (top === '' || (top.startsWith('_') && !SYSTEM_DBS.has(top))) {
    const methods = OPEN_ENDPOINTS[top];
    if (methods) {
      if (segments.length > 1) return notFound();
      return methods.includes(method) ? null : notAllowed(methods);
    }
    const adminMethods = ADMIN_ENDPOINTS[top];
    if (adminMethods) {
      if (user.name === null) return UNAUTHORIZED;
      if (!admin) return forbidden(`You are not a server admin (${top} needs one).`);
      if (adminMethods.length === 0) return { status: 501, error: 'not_implemented', reason: `${top} is not served by the embedded server.` };
      if (segments.length > 1 && top !== '_stats') return notFound();
      return adminMethods.includes(method) ? null : notAllowed(adminMethods);
    }
    return { status: 400, error: 'illegal_database_name', reason: `Name: '${top}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.` };
  }

  if (!SYSTEM_DBS.has(top) && !DB_NAME.test(top)) {
    return { status: 400, error: 'illegal_database_name', reason: `Name: '${top}'. Only lowercase characters (a-z), digits (0-9), and any of the characters _, $, (, ), +, -, and / are allowed. Must begin with a letter.` };
  }
  const structural = judgeDbPath(method, segments);
  if (structural) return structural;
  if (user.name === null) return UNAUTHORIZED;
  // Logins depend on _users: deleting it would lock everyone but the admin out and hang requests in flight.
  if (SYSTEM_DBS.has(top) && segments.length === 1 && method === 'DELETE') return forbidden(`The embedded server keeps ${top}: it cannot be deleted.`);
  if (admin) return null;

  if (top === '_users') return judgeUsersDb(method, segments, user);
  if (SYSTEM_DBS.has(top)) return forbidden(`Only admins may use ${top}.`);
  // Creating or deleting a database is a server admin's operation; the rest depends on the
  // database's _security (access.ts).
  if (segments.length === 1 && (method === 'PUT' || method === 'DELETE')) {
    return forbidden('You are not a server admin (creating or deleting a database needs one).');
  }
  return null;
}

/** Whether the request is inside a user database, where the database's _security decides (access.ts). */
export function isUserDbPath(segments: string[]): boolean {
  const top = segments[0];
  return top !== undefined && !top.startsWith('_');
}

/** The shape of a request inside a database: known endpoints with their methods, documents, attachments. */
function judgeDbPath(method: string, segments: string[]): Verdict | null {
  const [, second, third] = segments;
  if (second === undefined) return DB_METHODS.includes(method) ? null : notAllowed(DB_METHODS);
  if (second === '_design' || second === '_local') {
    if (third === undefined) return notFound();
    if (second === '_local' && segments.length > 3) return notFound();
    if (segments.length === 3) return DOC_METHODS.includes(method) ? null : notAllowed(DOC_METHODS);
    return judgeDesignPath(method, segments);
  }
  if (second.startsWith('_')) {
    const methods = DB_ENDPOINTS[second];
    if (!methods) return bad(`Database endpoint ${second} is not served here.`);
    if (second === '_index' && segments.length > 2) return method === 'DELETE' ? null : notAllowed(['DELETE']);
    if (segments.length > 2) return notFound();
    return methods.includes(method) ? null : notAllowed(methods);
  }
  if (segments.length === 2) return DOC_METHODS.includes(method) ? null : notAllowed(DOC_METHODS);
  // An attachment: /db/doc/name (names may hold slashes).
  const attachmentMethods = ['GET', 'HEAD', 'PUT', 'DELETE'];
  return attachmentMethods.includes(method) ? null : notAllowed(attachmentMethods);
}

/** /db/_design/ddoc/...: views, info, and the ddoc's attachments; show/list/update/rewrite are not served. */
function judgeDesignPath(method: string, segments: string[]): Verdict | null {
  const fourth = segments[3]!;
  if (fourth === '_view') {
    if (segments.length !== 5) return notFound();
    return ['GET', 'HEAD', 'POST'].includes(method) ? null : notAllowed(['GET', 'HEAD', 'POST']);
  }
  if (fourth === '_info') {
    if (segments.length !== 4) return notFound();
    return READ.includes(method) ? null : notAllowed(READ);
  }
  if (fourth.startsWith('_')) return bad(`Design document endpoint ${fourth} is not served here (show, list, update and rewrite functions are not supported).`);
  return ['GET', 'HEAD', 'PUT', 'DELETE'].includes(method) ? null : notAllowed(['GET', 'HEAD', 'PUT', 'DELETE']);
}

function notFound(): Verdict {
  return { status: 404, error: 'not_found', reason: 'missing' };
}

/** Non-admins may only read and update their own user document (CouchDB's rule). */
function judgeUsersDb(method: string, segments: string[], user: UserCtx): Verdict | null {
  const own = `org.couchdb.user:${user.name}`;
  if (segments.length === 2 && segments[1] === own && (method === 'GET' || method === 'HEAD' || method === 'PUT')) return null;
  return forbidden('Only admins may read or change other users.');
}
