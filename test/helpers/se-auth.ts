/**
 * The storage element's side of macaroons and WLCG tokens, for the nginx of the tests: an njs
 * script (libnginx-mod-http-js) that nginx runs on every request before serving it, and the
 * minting of the credentials it accepts.
 *
 * Macaroons: libmacaroons' V1 format and HMAC chain, as dCache makes them (key derived from the
 * root secret with HMAC("macaroons-key-generator", secret); signature = HMAC over the identifier,
 * then over each caveat in turn), with dCache's caveats `before:`, `activity:` and `path:`; any
 * other caveat is refused, as a verifier must. Bearer tokens: JWTs with WLCG claims (`exp`, `scope`
 * with `storage.read:/path`, `storage.create:/path`, `storage.modify:/path`), signed RS256 or
 * ES256 by a test issuer whose public keys the SE holds as a JWKS (what a real SE fetches from the issuer's
 * jwks_uri); the signature is checked with njs's WebCrypto (`crypto.subtle.verify`), which is
 * asynchronous, so the check runs as an `auth_request` subrequest (`js_content`) rather than a
 * `js_set` variable. njs 0.7.9 imports no JWK, so the script turns each JWK into SPKI DER itself.
 */
import { createHmac, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

export type Jwk = { kid: string; use: 'sig' } & ({ kty: 'RSA'; alg: 'RS256'; n: string; e: string } | { kty: 'EC'; alg: 'ES256'; crv: 'P-256'; x: string; y: string });

export interface SeKeys {
  macaroonSecret: string;
  /** The token issuer's public keys */
  jwks: { keys: Jwk[] };
}

/** A WLCG token issuer: a key pair; `jwks` is what it publishes. */
export interface TokenIssuer {
  privateKey: KeyObject;
  kid: string;
  alg: 'RS256' | 'ES256';
  jwks: { keys: Jwk[] };
}

/** A new issuer; `kid` lets a test make a rogue issuer that claims another's key id. */
export function createTokenIssuer(opts: { kid?: string; alg?: 'RS256' | 'ES256' } = {}): TokenIssuer {
  const kid = opts.kid ?? randomBytes(6).toString('hex');
  if (opts.alg === 'ES256') {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { x, y } = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
    return { privateKey, kid, alg: 'ES256', jwks: { keys: [{ kty: 'EC', crv: 'P-256', x, y, kid, alg: 'ES256', use: 'sig' }] } };
  }
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const { n, e } = publicKey.export({ format: 'jwk' }) as { n: string; e: string };
  return { privateKey, kid, alg: 'RS256', jwks: { keys: [{ kty: 'RSA', n, e, kid, alg: 'RS256', use: 'sig' }] } };
}

/**
 * nginx configuration for the checks: the main request's method, path and `authz` argument are
 * handed to the subrequest in variables (a subrequest has its own method and URI).
 */
export const SE_AUTH_NGINX = {
  http: 'js_import auth from se-auth.js;',
  server: 'location = /.se-auth { internal; js_content auth.check; }',
  location: 'set $se_method $request_method;\n      set $se_uri $uri;\n      set $se_authz $arg_authz;\n      auth_request /.se-auth;',
};

/** njs (njs 0.7: ES5 plus async/await) whose `check` answers the auth subrequest 200, 401 or 403. */
export function njsVerifier(keys: SeKeys): string {
  return `
// require('crypto') is HMAC and hashes; the global crypto is WebCrypto (crypto.subtle).
var hashes = require('crypto');
var MAC_SECRET = ${JSON.stringify(keys.macaroonSecret)};
var JWKS = ${JSON.stringify(keys.jwks)};
function b64(s) { return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64'); }
function hmac(key, data) { return hashes.createHmac('sha256', key).update(data).digest(); }
function reading(m) { return m === 'GET' || m === 'HEAD' || m === 'PROPFIND' || m === 'OPTIONS'; }
function activityAllows(list, m) {
  var a = list.split(',');
  if (m === 'GET') return a.indexOf('DOWNLOAD') >= 0;
  if (reading(m)) return a.indexOf('DOWNLOAD') >= 0 || a.indexOf('LIST') >= 0 || a.indexOf('READ_METADATA') >= 0;
  if (m === 'PUT' || m === 'MKCOL' || m === 'MOVE') return a.indexOf('UPLOAD') >= 0 || a.indexOf('MANAGE') >= 0;
  if (m === 'DELETE') return a.indexOf('DELETE') >= 0;
  return false;
}
function macaroon(q, token) {
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
    else if (c.indexOf('activity:') === 0) { if (!activityAllows(c.slice(9), q.method)) verdict = '403'; }
    else if (c.indexOf('path:') === 0) { if (q.uri.indexOf(c.slice(5)) !== 0) verdict = '403'; }
    else if (c.indexOf('id:') !== 0) return '401';
  }
  return verdict;
}
// DER: a tag and its content with the length in short or long form.
function der(tag, content) {
  var n = content.length;
  var len = n < 128 ? [n] : n < 256 ? [0x81, n] : [0x82, n >> 8, n & 255];
  return Buffer.concat([Buffer.from([tag].concat(len)), content]);
}
function derInt(bytes) { return der(0x02, bytes[0] & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes); }
// SubjectPublicKeyInfo of a JWK. RSA: rsaEncryption OID, NULL, the key as a BIT STRING;
// P-256: a fixed prefix (id-ecPublicKey, prime256v1) and the uncompressed point 04 || x || y.
var RSA_ALGORITHM = Buffer.from('300d06092a864886f70d0101010500', 'hex');
var P256_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');
function spki(jwk) {
  if (jwk.kty === 'EC') return Buffer.concat([P256_PREFIX, b64(jwk.x), b64(jwk.y)]);
  var rsaKey = der(0x30, Buffer.concat([derInt(b64(jwk.n)), derInt(b64(jwk.e))]));
  return der(0x30, Buffer.concat([RSA_ALGORITHM, der(0x03, Buffer.concat([Buffer.from([0]), rsaKey]))]));
}
// The algorithm is the key's, never the token's choice: no "none", no HS256 keyed with a public key.
var ALGS = {
  RS256: { kty: 'RSA', key: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, verify: { name: 'RSASSA-PKCS1-v1_5' } },
  ES256: { kty: 'EC', key: { name: 'ECDSA', namedCurve: 'P-256' }, verify: { name: 'ECDSA', hash: 'SHA-256' } },
};
async function jwt(q, token) {
  var p = token.split('.');
  var header = JSON.parse(b64(p[0]).toString());
  var alg = Object.prototype.hasOwnProperty.call(ALGS, header.alg) ? ALGS[header.alg] : null;
  if (!alg) return '401';
  var jwk = JWKS.keys.filter(function (k) { return k.kty === alg.kty && k.alg === header.alg && (!header.kid || k.kid === header.kid); })[0];
  if (!jwk) return '401';
  var key = await crypto.subtle.importKey('spki', spki(jwk), alg.key, false, ['verify']);
  if (!(await crypto.subtle.verify(alg.verify, key, b64(p[2]), Buffer.from(p[0] + '.' + p[1])))) return '401';
  var claims = JSON.parse(b64(p[1]).toString());
  if (!(claims.exp * 1000 > Date.now())) return '401';
  var want = reading(q.method) ? ['storage.read:'] : q.method === 'DELETE' ? ['storage.modify:'] : ['storage.create:', 'storage.modify:'];
  var scopes = String(claims.scope || '').split(' ');
  for (var i = 0; i < scopes.length; i++) {
    for (var k = 0; k < want.length; k++) {
      if (scopes[i].indexOf(want[k]) === 0 && q.uri.indexOf(scopes[i].slice(want[k].length)) === 0) return 'ok';
    }
  }
  return '403';
}
async function verdict(r) {
  var q = { method: r.variables.se_method, uri: r.variables.se_uri };
  var h = r.headersIn['Authorization'] || '';
  var token = h.indexOf('Bearer ') === 0 ? h.slice(7).trim() : (r.variables.se_authz || '');
  if (!token) return '401';
  return token.split('.').length === 3 ? jwt(q, token) : macaroon(q, token);
}
async function check(r) {
  var v;
  try { v = await verdict(r); } catch (e) { v = '401'; }
  r.return(v === 'ok' ? 200 : Number(v));
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

/** A WLCG-profile JWT signed by `issuer` (RS256, or ES256 with the signature as r || s, as JWS has it). */
export function mintJwt(issuer: TokenIssuer, claims: { scope: string; lifetimeS: number; sub?: string }): string {
  const now = Math.floor(Date.now() / 1000);
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = enc({ alg: issuer.alg, typ: 'JWT', kid: issuer.kid });
  const body = enc({ wlcg: { ver: '1.0' }, iss: 'https://iam.test', sub: claims.sub ?? 'jane', aud: 'https://wlcg.cern.ch/jwt/v1/any', iat: now, nbf: now, exp: now + claims.lifetimeS, scope: claims.scope, jti: Math.random().toString(36).slice(2) });
  return `${head}.${body}.${sign('sha256', Buffer.from(`${head}.${body}`), { key: issuer.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`;
}
