/**
 * The storage element's side of macaroons and WLCG tokens, for the nginx of the tests: an njs
 * script (libnginx-mod-http-js) that nginx runs on every request before serving it, and the
 * minting of the credentials it accepts.
 *
 * Macaroons: libmacaroons' V1 format and HMAC chain, as dCache makes them (key derived from the
 * root secret with HMAC("macaroons-key-generator", secret); signature = HMAC over the identifier,
 * then over each caveat in turn), with dCache's caveats `before:`, `activity:` and `path:`; any
 * other caveat is refused, as a verifier must. Bearer tokens: JWTs with WLCG claims (`exp`, `scope`
 * with `storage.read:/path`, `storage.create:/path`, `storage.modify:/path`). Simplification: the
 * JWT is HS256 (a secret shared with the SE) where a real WLCG token is RS256 checked against
 * the issuer's published keys; njs's synchronous API has HMAC but no RSA verification.
 */
import { createHmac } from 'node:crypto';

export interface SeKeys {
  macaroonSecret: string;
  jwtSecret: string;
}

/** njs (ES5-ish: njs 0.7) that sets $se_auth to "ok", "401" or "403". */
export function njsVerifier(keys: SeKeys): string {
  return `
var crypto = require('crypto');
var MAC_SECRET = ${JSON.stringify(keys.macaroonSecret)};
var JWT_SECRET = ${JSON.stringify(keys.jwtSecret)};
function b64(s) { return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64'); }
function hmac(key, data) { return crypto.createHmac('sha256', key).update(data).digest(); }
function reading(m) { return m === 'GET' || m === 'HEAD' || m === 'PROPFIND' || m === 'OPTIONS'; }
function activityAllows(list, m) {
  var a = list.split(',');
  if (m === 'GET') return a.indexOf('DOWNLOAD') >= 0;
  if (reading(m)) return a.indexOf('DOWNLOAD') >= 0 || a.indexOf('LIST') >= 0 || a.indexOf('READ_METADATA') >= 0;
  if (m === 'PUT' || m === 'MKCOL' || m === 'MOVE') return a.indexOf('UPLOAD') >= 0 || a.indexOf('MANAGE') >= 0;
  if (m === 'DELETE') return a.indexOf('DELETE') >= 0;
  return false;
}
function macaroon(r, token) {
  var bytes = b64(token);
  var at = 0, id = null, sig = null, cids = [];
  while (at < bytes.length) {
    var len = parseInt(bytes.slice(at, at + 4).toString(), 16);
    if (!(len > 5) || at + len > bytes.length) return '401';
    var body = bytes.slice(at + 4, at + len - 1);
    var sp = body.indexOf(32);
    var key = body.slice(0, sp).toString();
    var value = body.slice(sp + 1);
    if (key === 'identifier') id = value;
    else if (key === 'cid') cids.push(value);
    else if (key === 'signature') sig = value;
    else if (key !== 'location') return '401';
    at += len;
  }
  if (id === null || sig === null) return '401';
  var s = hmac(hmac('macaroons-key-generator', MAC_SECRET), id);
  for (var i = 0; i < cids.length; i++) s = hmac(s, cids[i]);
  if (s.toString('hex') !== sig.toString('hex')) return '401';
  var verdict = 'ok';
  for (var j = 0; j < cids.length; j++) {
    var c = cids[j].toString();
    if (c.indexOf('before:') === 0) { if (!(Date.parse(c.slice(7)) > Date.now())) return '401'; }
    else if (c.indexOf('activity:') === 0) { if (!activityAllows(c.slice(9), r.method)) verdict = '403'; }
    else if (c.indexOf('path:') === 0) { if (r.uri.indexOf(c.slice(5)) !== 0) verdict = '403'; }
    else if (c.indexOf('id:') !== 0) return '401';
  }
  return verdict;
}
function jwt(r, token) {
  var p = token.split('.');
  var expected = hmac(JWT_SECRET, p[0] + '.' + p[1]).toString('base64').replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
  if (expected !== p[2]) return '401';
  var header = JSON.parse(b64(p[0]).toString());
  if (header.alg !== 'HS256') return '401';
  var claims = JSON.parse(b64(p[1]).toString());
  if (!(claims.exp * 1000 > Date.now())) return '401';
  var want = reading(r.method) ? ['storage.read:'] : r.method === 'DELETE' ? ['storage.modify:'] : ['storage.create:', 'storage.modify:'];
  var scopes = String(claims.scope || '').split(' ');
  for (var i = 0; i < scopes.length; i++) {
    for (var k = 0; k < want.length; k++) {
      if (scopes[i].indexOf(want[k]) === 0 && r.uri.indexOf(scopes[i].slice(want[k].length)) === 0) return 'ok';
    }
  }
  return '403';
}
function check(r) {
  var h = r.headersIn['Authorization'] || '';
  var token = h.indexOf('Bearer ') === 0 ? h.slice(7).trim() : (r.args.authz || '');
  if (!token) return '401';
  try { return token.split('.').length === 3 ? jwt(r, token) : macaroon(r, token); } catch (e) { return '401'; }
}
export default { check: check };
`;
}

/** A macaroon in libmacaroons' V1 serialization (URL-safe base64, unpadded, as dCache sends it). */
export function mintMacaroon(secret: string, opts: { location?: string; identifier?: string; caveats: string[] }): string {
  const packet = (key: string, value: Buffer | string) => {
    const body = Buffer.concat([Buffer.from(`${key} `), Buffer.from(value), Buffer.from('\n')]);
    return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0')), body]);
  };
  const identifier = opts.identifier ?? `tokenpool-test-${Math.random().toString(36).slice(2)}`;
  let sig = createHmac('sha256', createHmac('sha256', 'macaroons-key-generator').update(secret).digest()).update(identifier).digest();
  for (const c of opts.caveats) sig = createHmac('sha256', sig).update(c).digest();
  const packets = [packet('location', opts.location ?? 'test-se'), packet('identifier', identifier), ...opts.caveats.map((c) => packet('cid', c)), packet('signature', sig)];
  return Buffer.concat(packets).toString('base64url');
}

/** A WLCG-profile JWT (HS256 with the SE's shared secret, see above). */
export function mintJwt(secret: string, claims: { scope: string; lifetimeS: number; sub?: string }): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = enc({ alg: 'HS256', typ: 'JWT' });
  const body = enc({ wlcg: { ver: '1.0' }, iss: 'https://iam.test', sub: claims.sub ?? 'jane', aud: 'https://wlcg.cern.ch/jwt/v1/any', iat: now, nbf: now, exp: now + claims.lifetimeS, scope: claims.scope, jti: Math.random().toString(36).slice(2) });
  return `${head}.${body}.${createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')}`;
}
