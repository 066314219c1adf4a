/**
 * Stage-in and stage-out against a real nginx WebDAV storage element that checks macaroons
 * (libmacaroons HMAC chain, dCache caveats) and WLCG bearer tokens (JWT) in njs on every request:
 * with each credential, refused without it, through the built-in client and gfal-copy; the
 * credential re-read per request and refreshed when it would expire, a refusal retried once with a
 * fresh one; a token that expires during a throttled 200 MB upload. No secret in any log line or
 * error.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, test } from 'vitest';
import { createWorkerNode, type WorkerNodeArgs } from '../agent/node/index.js';
import { gfalAvailable } from '../agent/node/transfer/gfal.js';
import { saveMacaroons } from '../agent/node/credentials/macaroon-file.js';
import { parseMacaroon } from '../agent/node/credentials/macaroon.js';
import { PhaseError } from '../agent/phases.js';
import { TokenpoolError } from '../server/errors.js';
import { createLogger } from '../server/log.js';
import { redactUrl } from '../server/redact.js';
import { EXIT, type NewToken } from '../server/token.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { phaseHarness } from './helpers/phase.js';
import { createTokenIssuer, mintJwt, mintMacaroon, type TokenIssuer } from './helpers/se-auth.js';
import { startThrottle } from './helpers/throttle.js';

const issuer = createTokenIssuer();
// A second issuer the SE trusts, with an elliptic-curve key (ES256).
const ecIssuer = createTokenIssuer({ alg: 'ES256' });
// Claims the issuer's key id, signs with a key of its own: its tokens must not verify.
const rogue = createTokenIssuer({ kid: issuer.kid });
const keys = { macaroonSecret: 'se-root-secret-' + randomBytes(8).toString('hex'), jwks: { keys: [...issuer.jwks.keys, ...ecIssuer.jwks.keys] } };
let se: Nginx;
let work: string;
const secrets: string[] = [];
const ENV_KEYS = ['BEARER_TOKEN', 'BEARER_TOKEN_FILE', 'XDG_RUNTIME_DIR'];

beforeAll(async () => {
  se = await startNginx({ auth: keys, accessLog: true });
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-credentials-'));
  fs.mkdirSync(path.join(se.root, 'lofar', 'L229507'), { recursive: true });
  fs.writeFileSync(path.join(se.root, 'lofar', 'L229507', 'SB100.dat'), randomBytes(3 << 20));
});

afterAll(async () => {
  await se.close();
  fs.rmSync(work, { recursive: true, force: true });
});

afterEach(() => {
  for (const k of ENV_KEYS) delete process.env[k];
});

const macaroon = (caveats: string[], lifetimeS = 3600) => {
  const m = mintMacaroon(keys.macaroonSecret, { caveats: [...caveats, `before:${new Date(Date.now() + lifetimeS * 1000).toISOString()}`] });
  secrets.push(m);
  return m;
};
const jwt = (scope: string, lifetimeS: number, by: TokenIssuer = issuer) => {
  const t = mintJwt(by, { scope, lifetimeS });
  secrets.push(t);
  return t;
};
const writeToken = (file: string, token: string) => {
  fs.writeFileSync(`${file}.new`, token + '\n', { mode: 0o600 });
  fs.renameSync(`${file}.new`, file);
};

const harness = (spec: Partial<NewToken>) => phaseHarness(work, spec);

const node = (extra: Partial<WorkerNodeArgs>) =>
  createWorkerNode(
    { retryDelay: '0.2s', transferRetries: 1, transferTimeout: '120s', workdir: work, macaroons: path.join(work, 'none.json'), credentialWait: '5s', minCredentialLifetime: '1s', ...extra },
    createLogger('node', { level: 'silent', pretty: false }),
  );

function assertNoSecret(...texts: string[]) {
  for (const t of texts) for (const s of secrets) assert.ok(!t.includes(s), 'a credential leaked into a log line or error');
}

async function failure(p: Promise<unknown>): Promise<PhaseError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PhaseError, String(err));
    return err;
  }
  assert.fail('expected the phase to fail');
}

const input = () => `${se.url}/lofar/L229507/SB100.dat`;

for (const tool of ['builtin', 'gfal'] as const) {
  describe(`${tool} client`, () => {
    const skip = tool === 'gfal' && !gfalAvailable();

    test.skipIf(skip)('macaroon from the macaroons file: stage-in and stage-out; refused without one', async () => {
      const file = path.join(work, `macaroons-${tool}.json`);
      const m = macaroon(['activity:DOWNLOAD,LIST,UPLOAD', 'path:/lofar']);
      assert.ok(parseMacaroon(m).expiresAt, 'the agent reads the expiry from the caveats');
      saveMacaroons(file, [{ site: 'SURF', hosts: [`127.0.0.1:${se.port}`], content: m, request_id: 1 }]);
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      const wn = node({ macaroons: file, transferTool: tool });

      const h = harness({ input: [{ url: input(), auth: 'macaroon' }], results: `${se.url}/lofar/out/${tool}-mac.tar` });
      await wn.stageIn(h.ctx);
      assert.equal(fs.statSync(path.join(h.ctx.inputDir, 'SB100.dat')).size, 3 << 20);
      fs.mkdirSync(h.ctx.outputDir, { recursive: true });
      fs.writeFileSync(path.join(h.ctx.outputDir, 'result.txt'), 'calibrated\n');
      const out = await wn.stageOut(h.ctx);
      assert.equal(out.length, 1);
      assert.ok(fs.existsSync(path.join(se.root, 'lofar', 'out', `${tool}-mac.tar`)));
      assertNoSecret(h.logs(), JSON.stringify(out));

      // Without a macaroon the SE refuses; a token whose input names the macaroon is given back first.
      const bare = harness({ input: [{ url: input() }] });
      const refused = await failure(node({ transferTool: tool }).stageIn(bare.ctx));
      assert.equal(refused.reason, 'download failed');
      assert.match(refused.message, /401|denied/i);
      const needs = harness({ input: [{ url: input(), auth: 'macaroon' }] });
      const given = await failure(node({ transferTool: tool }).stageIn(needs.ctx));
      assert.equal(given.reason, 'no usable credential');
      assert.equal(given.tokenExitCode, EXIT.credentials);
      assert.equal(given.retryable, true);
      assert.ok(!fs.existsSync(path.join(needs.ctx.inputDir, 'SB100.dat')), 'nothing moved');
      assertNoSecret(refused.message, given.message);
    });

    test.skipIf(skip)('WLCG bearer token by the discovery rules: stage-in and stage-out; refused without, or out of scope', async () => {
      const file = path.join(work, `bt-${tool}`);
      writeToken(file, jwt('storage.read:/lofar storage.create:/lofar/out', 3600));
      process.env.BEARER_TOKEN_FILE = file;
      const wn = node({ transferTool: tool });
      const h = harness({ input: [{ url: input(), auth: 'bearer' }], results: `${se.url}/lofar/out/${tool}-bearer.tar` });
      await wn.stageIn(h.ctx);
      fs.mkdirSync(h.ctx.outputDir, { recursive: true });
      fs.writeFileSync(path.join(h.ctx.outputDir, 'result.txt'), 'imaged\n');
      await wn.stageOut(h.ctx);
      assert.ok(fs.existsSync(path.join(se.root, 'lofar', 'out', `${tool}-bearer.tar`)));

      // Writing outside the token's storage.create scope: 403, not retried as an outage.
      const outside = harness({ results: `${se.url}/lofar/elsewhere/${tool}.tar` });
      fs.mkdirSync(outside.ctx.outputDir, { recursive: true });
      fs.writeFileSync(path.join(outside.ctx.outputDir, 'r.txt'), 'x');
      const denied = await failure(wn.stageOut(outside.ctx));
      assert.equal(denied.reason, 'upload failed');
      assert.equal(denied.retryable, false);

      // BEARER_TOKEN wins over the file; without either the SE refuses.
      delete process.env.BEARER_TOKEN_FILE;
      const none = await failure(node({ transferTool: tool }).stageIn(harness({ input: [{ url: input() }] }).ctx));
      assert.match(none.message, /401|denied/i);
      process.env.BEARER_TOKEN = jwt('storage.read:/lofar', 3600);
      await node({ transferTool: tool }).stageIn(harness({ input: [{ url: input() }] }).ctx);
      assertNoSecret(h.logs(), denied.message);
    });
  });
}

test('the SE takes only tokens its issuers signed (RS256, ES256): another key under the same kid, alg none, HS256 and an expired token are refused', async () => {
  const answer = async (token: string) => (await fetch(input(), { method: 'HEAD', headers: { Authorization: `Bearer ${token}` } })).status;
  const good = jwt('storage.read:/lofar', 3600);
  assert.equal(await answer(good), 200);
  assert.equal(await answer(jwt('storage.read:/lofar', 3600, ecIssuer)), 200);
  assert.equal(await answer(jwt('storage.read:/lofar', 3600, rogue)), 401);
  assert.equal(await answer(jwt('storage.read:/lofar', 3600, createTokenIssuer({ kid: ecIssuer.kid, alg: 'ES256' }))), 401);
  assert.equal(await answer(jwt('storage.read:/lofar', -10)), 401);
  const [, body] = good.split('.');
  const head = (alg: string) => Buffer.from(JSON.stringify({ alg, typ: 'JWT', kid: issuer.kid })).toString('base64url');
  assert.equal(await answer(`${head('none')}.${body}.`), 401);
  // HS256 keyed with the issuer's public modulus: the classic confusion attack.
  const rsa = issuer.jwks.keys[0]!;
  assert.ok(rsa.kty === 'RSA');
  const hs = createHmac('sha256', rsa.n).update(`${head('HS256')}.${body}`).digest('base64url');
  assert.equal(await answer(`${head('HS256')}.${body}.${hs}`), 401);
});

test('--results-auth: a node without the results storage\'s credential refuses to claim; URLs with ?authz= are printed without it', async () => {
  const results = `${se.url}/lofar/out/\${TOKEN_ID}.tar`;
  await assert.rejects(node({ results, resultsAuth: 'bearer' }).preflight(), (e: unknown) => e instanceof TokenpoolError && e.exitCode === EXIT.credentials && /no usable credential/.test(e.message));
  const file = path.join(work, 'bt-preflight');
  writeToken(file, jwt('storage.create:/lofar/out', 3600));
  process.env.BEARER_TOKEN_FILE = file;
  await node({ results, resultsAuth: 'bearer' }).preflight();
  const m = macaroon(['activity:DOWNLOAD']);
  assert.equal(redactUrl(`${se.url}/lofar/a.tar?authz=${m}`), `${se.url}/lofar/a.tar?authz=***`);
});

test('a token that would expire before the transfer is refreshed first (refresh command); a refused one is retried once with a fresh one', async () => {
  const file = path.join(work, 'bt-refresh');
  const fresh = path.join(work, 'fresh.jwt');
  writeToken(file, jwt('storage.read:/lofar', 5));
  writeToken(fresh, jwt('storage.read:/lofar', 3600));
  process.env.BEARER_TOKEN_FILE = file;
  const h = harness({ input: [{ url: input(), auth: 'bearer' }] });
  await node({ minCredentialLifetime: '60s', tokenRefreshCommand: `cat ${fresh}` }).stageIn(h.ctx);
  assert.match(h.logs(), /refreshing the storage credential/);

  // A token the SE does not accept (signed by someone else): one retry with the command's token.
  writeToken(file, jwt('storage.read:/lofar', 3600, rogue));
  const before = se.requests().length;
  const r = harness({ input: [{ url: input() }] });
  await node({ tokenRefreshCommand: `cat ${fresh}` }).stageIn(r.ctx);
  assert.deepEqual(se.requests().slice(before).map((l) => l.split(' ')[2]), ['401', '200']);
  assert.match(r.logs(), /refused; retrying once with a fresh credential/);

  // A refresher that cannot help: the second refusal counts (no third request).
  writeToken(fresh, jwt('storage.read:/lofar', 3600, rogue));
  const again = se.requests().length;
  const bad = await failure(node({ tokenRefreshCommand: `cat ${fresh}`, transferRetries: 3 }).stageIn(harness({ input: [{ url: input() }] }).ctx));
  assert.equal(bad.reason, 'download failed');
  assert.deepEqual(se.requests().slice(again).map((l) => l.split(' ')[2]), ['401', '401']);
  assertNoSecret(h.logs(), r.logs(), bad.message);
});

test('tokens expiring during a throttled 200 MB upload: refreshed before it, and kept fresh by a refresher during it; the upload is made once', async () => {
  const throttle = await startThrottle(se.port, 25 << 20);
  const file = path.join(work, 'bt-upload');
  const scope = 'storage.read:/lofar storage.create:/lofar/out';
  process.env.BEARER_TOKEN_FILE = file;
  // The file holds a token with 4 s left; the refresher (as oidc-agent's loop does) rewrites it
  // every 2 s with a token of 6 s: each one expires long before the ~8 s upload ends.
  writeToken(file, jwt(scope, 4));
  const refresher = setInterval(() => writeToken(file, jwt(scope, 6)), 2000);
  try {
    const h = harness({ results: `${throttle.url}/lofar/out/big.tar` });
    fs.mkdirSync(h.ctx.outputDir, { recursive: true });
    fs.writeFileSync(path.join(h.ctx.outputDir, 'big.dat'), randomBytes(200 << 20));
    const before = se.requests().length;
    // 5 s minimum lifetime: the 4 s token is not good enough to start with; the next rewrite is.
    const out = await node({ minCredentialLifetime: '5s' }).stageOut(h.ctx);
    assert.ok(out[0]!.size > 200 << 20, JSON.stringify(out));
    const calls = se.requests().slice(before);
    assert.equal(calls.filter((l) => l.startsWith('PUT')).length, 1, `one PUT: ${calls.join(', ')}`);
    assert.ok(calls.some((l) => /^PUT \/lofar\/out\/big\.tar\S* 201$/.test(l)), calls.join(', '));
    assert.ok(!calls.some((l) => l.endsWith(' 401')), `no request refused: ${calls.join(', ')}`);
    assert.match(h.logs(), /refreshing the storage credential/);
    assertNoSecret(h.logs());
  } finally {
    clearInterval(refresher);
    await throttle.close();
  }
});
