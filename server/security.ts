/**
 * Who may do what in a pool. Three database roles (granted to users in CouchDB's _users database):
 *   tokenpool_manager: database admin; installs design documents, creates, resets and deletes tokens.
 *   tokenpool_agent:   member; claims and updates tokens, writes other documents, cannot delete tokens
 *                      or touch design documents (CouchDB lets only database admins write those).
 *   tokenpool_viewer:  member; reads only (the validate function refuses every write).
 * The validate function also refuses malformed tokens, with the same rules as TokenSchema in token.ts,
 * so that a buggy client or a hand edit in Fauxton cannot put a token into the pool that agents choke on.
 * PiCaS-format tokens (none of tokenpool's own fields, see isPicasToken in token.ts) are checked with
 * PicasTokenSchema's rules instead, so that picasclient and GRID_LRT scripts can fill a pool; a
 * tokenpool token stays one: dropping its tokenpool fields is refused like any other breakage.
 */
import { LTA_SITES, TOKEN_STATUSES, TOKENPOOL_FIELDS } from './token.js';

export const ROLES = {
  manager: 'tokenpool_manager',
  agent: 'tokenpool_agent',
  viewer: 'tokenpool_viewer',
} as const;
export type RoleName = keyof typeof ROLES;

export interface SecurityObject {
  admins: { names: string[]; roles: string[] };
  members: { names: string[]; roles: string[] };
}

export function securityObject(): SecurityObject {
  return {
    admins: { names: [], roles: [ROLES.manager] },
    members: { names: [], roles: [ROLES.manager, ROLES.agent, ROLES.viewer] },
  };
}

/**
 * The validate_doc_update function: portable ES5 that CouchDB's SpiderMonkey and QuickJS sandboxes and
 * PouchDB run alike (arrays are tested with Array.isArray: a document's arrays are not instances of
 * the sandbox's Array in CouchDB). Accounts count as manager or agent by role or by being listed in
 * the database's _security (names, or roles other than the viewer's). Messages name the field
 * so that the writer learns what to fix: "invalid token L1_cal_SB001: lock must be a non-negative integer".
 */
export const validateDocUpdate = `function (newDoc, oldDoc, userCtx, secObj) {
  var STATUSES = ${JSON.stringify(TOKEN_STATUSES)};
  var SITES = ${JSON.stringify(LTA_SITES)};
  var TOKENPOOL_FIELDS = ${JSON.stringify(TOKENPOOL_FIELDS)};
  var roles = (userCtx && userCtx.roles) || [];
  var name = userCtx && userCtx.name;
  // Accounts listed in _security by name (PiCaS pools do this) have no roles in userCtx: the listing counts.
  function listed(part, exceptRole) {
    var p = secObj && secObj[part];
    if (!p) return false;
    if (name && Array.isArray(p.names) && p.names.indexOf(name) !== -1) return true;
    var granted = Array.isArray(p.roles) ? p.roles : [];
    for (var i = 0; i < roles.length; i++) if (roles[i] !== exceptRole && granted.indexOf(roles[i]) !== -1) return true;
    return false;
  }
  var isManager = roles.indexOf('_admin') !== -1 || roles.indexOf('${ROLES.manager}') !== -1 || listed('admins');
  var isAgent = isManager || roles.indexOf('${ROLES.agent}') !== -1 || listed('members', '${ROLES.viewer}');
  if (!isAgent) {
    throw({ forbidden: 'your account lacks the role ${ROLES.agent} or ${ROLES.manager} needed to write (${ROLES.viewer} may only read)' });
  }
  var wasToken = !!oldDoc && oldDoc.type === 'token';
  if (newDoc._deleted) {
    if (wasToken && !isManager) throw({ forbidden: 'only a ${ROLES.manager} may delete tokens' });
    return;
  }
  if (newDoc._id.indexOf('_design/') === 0) return;
  if (newDoc.type !== 'token') {
    if (wasToken) throw({ forbidden: 'invalid token ' + newDoc._id + ': type must stay "token"' });
    return;
  }

  function fail(field, message) {
    throw({ forbidden: 'invalid token ' + newDoc._id + ': ' + field + ' ' + message });
  }
  function isInt(v) { return typeof v === 'number' && isFinite(v) && Math.floor(v) === v; }
  function isNat(v) { return isInt(v) && v >= 0; }
  function isObject(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
  function isStr(v) { return typeof v === 'string'; }
  function nat(v, field) { if (!isNat(v)) fail(field, 'must be a non-negative integer'); }
  function positive(v, field) { if (!isInt(v) || v < 1) fail(field, 'must be a positive integer'); }
  function str(v, field) { if (!isStr(v)) fail(field, 'must be a string'); }
  function strOrNull(v, field) { if (v !== null && !isStr(v)) fail(field, 'must be a string or null'); }
  function intOrNull(v, field) { if (v !== null && !isInt(v)) fail(field, 'must be an integer or null'); }
  function natOrNull(v, field) { if (v !== null && !isNat(v)) fail(field, 'must be a non-negative integer or null'); }
  function list(v, field, each) {
    if (!Array.isArray(v)) fail(field, 'must be a list');
    for (var i = 0; i < v.length; i++) {
      if (each) {
        if (!isObject(v[i])) fail(field + '.' + i, 'must be an object');
        each(v[i], field + '.' + i);
      }
    }
  }
  function adler32(v, field) { if (!isStr(v) || !/^[0-9a-f]{8}$/.test(v)) fail(field, 'must be 8 lower-case hex digits'); }

  var d = newDoc;
  function isPicas(doc) {
    for (var i = 0; i < TOKENPOOL_FIELDS.length; i++) if (doc[TOKENPOOL_FIELDS[i]] !== undefined) return false;
    return true;
  }
  if (isPicas(d) && !(wasToken && !isPicas(oldDoc))) {
    // PiCaS's rules: lock and done are 0, a Unix time, or PiCaS's error mark (99, older tools -1).
    var picasTime = function (v, field) { if (!isInt(v) || v < -1) fail(field, 'must be 0, a Unix time, 99 or -1 (PiCaS)'); };
    picasTime(d.lock, 'lock');
    picasTime(d.done, 'done');
    if (d.hostname !== undefined) str(d.hostname, 'hostname');
    if (d.scrub_count !== undefined) nat(d.scrub_count, 'scrub_count');
    if (d.exit_code !== undefined && d.exit_code !== null && !isInt(d.exit_code) && !(isStr(d.exit_code) && /^(-?\\d+)?$/.test(d.exit_code))) {
      fail('exit_code', 'must be an integer, "" or null');
    }
    if (d.error !== undefined) list(d.error, 'error', function () {});
    return;
  }
  nat(d.lock, 'lock');
  nat(d.done, 'done');
  // A token a tokenpool agent holds is not PiCaS's to take: a stock PiCaS worker that read Monitor/todo
  // before the agent's claim would lock it again (picasclient does not re-check lock) and run it twice.
  var HELD = ['locked', 'downloading', 'running', 'uploading'];
  if (wasToken && oldDoc.lease && newDoc.lease && oldDoc.lease.claim_id === newDoc.lease.claim_id &&
      HELD.indexOf(oldDoc.status) !== -1 && oldDoc.status === newDoc.status && newDoc.lock !== oldDoc.lock) {
    fail('lock', 'cannot change: a tokenpool agent holds the token (lease ' + oldDoc.lease.claim_id + ' of ' + oldDoc.lease.owner + '); PiCaS workers take tokens from Monitor/todo');
  }
  // Nor is a token already taken or finished: picasclient re-reads the document of a Monitor/todo row
  // that may be stale and locks it again, leaving done, status and lease as they were. tokenpool's own
  // re-takes (an expired lease) change status and lease; a worker's own finish (done, or 99) changes done.
  // A second lock within the same second (picasclient's locks are whole seconds) writes the document
  // back unchanged: no writer of a taken token has reason to.
  function sameBody(a, b) {
    var strip = function (doc) { var o = {}; for (var k in doc) if (k !== '_rev' && k !== '_revisions') o[k] = doc[k]; return JSON.stringify(o); };
    return strip(a) === strip(b);
  }
  if (wasToken && !isPicas(oldDoc) && newDoc.lock !== 0 && (oldDoc.lock !== 0 || oldDoc.done !== 0) && (newDoc.lock !== oldDoc.lock || sameBody(newDoc, oldDoc)) &&
      newDoc.done === oldDoc.done && newDoc.status === oldDoc.status && JSON.stringify(newDoc.lease || null) === JSON.stringify(oldDoc.lease || null)) {
    fail('lock', 'cannot change: the token is taken already (lock ' + oldDoc.lock + ', done ' + oldDoc.done + ', status ' + oldDoc.status + '); PiCaS workers take tokens from Monitor/todo');
  }
  str(d.hostname, 'hostname');
  nat(d.scrub_count, 'scrub_count');
  intOrNull(d.exit_code, 'exit_code');
  // A list of files; on a token adopted from PiCaS, PiCaS's input line.
  if (!isStr(d.input)) list(d.input, 'input', function (f, p) {
    if (!isStr(f.url) || f.url.length === 0) fail(p + '.url', 'must be a non-empty string');
    if (f.adler32 !== undefined) adler32(f.adler32, p + '.adler32');
    if (f.size !== undefined) nat(f.size, p + '.size');
  });
  list(d.output, 'output', function (f, p) {
    if (!isStr(f.url) || f.url.length === 0) fail(p + '.url', 'must be a non-empty string');
    nat(f.size, p + '.size');
    adler32(f.adler32, p + '.adler32');
    if (f.attempt !== undefined) positive(f.attempt, p + '.attempt');
  });
  if (d.stage_out_uploads !== undefined) list(d.stage_out_uploads, 'stage_out_uploads', function (u, p) {
    if (!isStr(u.url) || u.url.length === 0) fail(p + '.url', 'must be a non-empty string');
    nat(u.size, p + '.size');
    adler32(u.adler32, p + '.adler32');
    positive(u.attempt, p + '.attempt');
    if (!isStr(u.claim_id) || u.claim_id.length === 0) fail(p + '.claim_id', 'must be a non-empty string');
    nat(u.time, p + '.time');
  });
  list(d.error, 'error', function (e, p) {
    nat(e.time, p + '.time');
    str(e.message, p + '.message');
  });
  if (STATUSES.indexOf(d.status) === -1) fail('status', 'must be one of ' + STATUSES.join(', '));
  if (d.obsid !== null && (!isStr(d.obsid) || !/^L\\d+$/.test(d.obsid))) fail('obsid', 'must look like L229507, or be null (no LOFAR observation)');
  if (!isStr(d.step) || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(d.step)) fail('step', 'must be letters, digits, "_", "." or "-"');
  list(d.subbands, 'subbands');
  for (var s = 0; s < d.subbands.length; s++) nat(d.subbands[s], 'subbands.' + s);
  if (d.site !== null && SITES.indexOf(d.site) === -1) fail('site', 'must be one of ' + SITES.join(', ') + ' or null');
  strOrNull(d.command, 'command');
  strOrNull(d.image, 'image');
  strOrNull(d.results, 'results');
  if (typeof d.overwrite !== 'boolean') fail('overwrite', 'must be true or false');
  if (!isInt(d.priority)) fail('priority', 'must be an integer');
  if (!isObject(d.requirements)) fail('requirements', 'must be an object');
  var reqKeys = ['cores', 'memory_mb', 'time_limit_s', 'expected_s'];
  for (var r = 0; r < reqKeys.length; r++) {
    if (d.requirements[reqKeys[r]] !== undefined) positive(d.requirements[reqKeys[r]], 'requirements.' + reqKeys[r]);
  }
  nat(d.attempts, 'attempts');
  positive(d.max_attempts, 'max_attempts');
  if (d.lease !== null) {
    if (!isObject(d.lease)) fail('lease', 'must be an object or null');
    if (!isStr(d.lease.owner) || d.lease.owner.length === 0) fail('lease.owner', 'must be a non-empty string');
    if (!isStr(d.lease.claim_id) || d.lease.claim_id.length === 0) fail('lease.claim_id', 'must be a non-empty string');
    nat(d.lease.expires, 'lease.expires');
    nat(d.lease.heartbeat, 'lease.heartbeat');
  }
  list(d.history, 'history', function (a, p) {
    positive(a.attempt, p + '.attempt');
    str(a.claim_id, p + '.claim_id');
    str(a.owner, p + '.owner');
    str(a.hostname, p + '.hostname');
    strOrNull(a.batch_job_id, p + '.batch_job_id');
    nat(a.start, p + '.start');
    natOrNull(a.end, p + '.end');
    intOrNull(a.exit_code, p + '.exit_code');
    str(a.reason, p + '.reason');
    if (a.phases !== undefined) {
      if (!isObject(a.phases)) fail(p + '.phases', 'must be an object');
      for (var ph in a.phases) {
        if (typeof a.phases[ph] !== 'number' || a.phases[ph] < 0) fail(p + '.phases.' + ph, 'must be a non-negative number');
      }
    }
  });
  strOrNull(d.reason, 'reason');
  if (!isObject(d.times)) fail('times', 'must be an object');
  for (var t in d.times) {
    if (STATUSES.indexOf(t) === -1) fail('times.' + t, 'is not a status');
    nat(d.times[t], 'times.' + t);
  }
  nat(d.created, 'created');
  nat(d.updated, 'updated');
}`;
