/**
 * Stage-in and stage-out with an X.509 grid proxy against a real nginx WebDAV storage element that
 * authorises by client certificate: OpenSSL verifies the RFC 3820 proxy chain against the test CA
 * (proxies allowed by the tests' nginx module, test/helpers/nginx-x509-proxy), and the end-entity
 * DN is looked up in the SE's list, as grid storage maps it. Through the built-in client and
 * gfal-copy; refused without a proxy, with an expired one, one of an unlisted DN and one from a CA
 * the SE does not trust. The proxy's contents never appear in a log line or error.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, test } from 'vitest';
import { createWorkerNode, type WorkerNodeArgs } from '../agent/node/index.js';
import { proxyTlsCredentials } from '../agent/node/proxy.js';
import { gfalAvailable } from '../agent/node/transfer/gfal.js';
import { PhaseError } from '../agent/phases.js';
import { createLogger } from '../server/log.js';
import { EXIT, type NewToken } from '../server/token.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { phaseHarness } from './helpers/phase.js';
import { createTestCa, USER_DN, type TestCa } from './helpers/proxy.js';

const OTHER_DN = '/DC=org/DC=tokenpool-test/O=LOFAR/CN=Eve Unlisted';
const ENV_KEYS = ['X509_USER_PROXY', 'X509_CERT_DIR'];
let se: Nginx;
let ca: TestCa;
let work: string;
let certDir: string;
/** Private keys of every proxy made here: none may show up in a log line or error */
const keys: string[] = [];

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-credentials-proxy-'));
  ca = createTestCa(path.join(work, 'ca'));
  const host = ca.makeHost(path.join(work, 'host'));
  // gfal (davix) looks CAs up by subject hash, as in /etc/grid-security/certificates.
  execFileSync('openssl', ['rehash', host.certDir]);
  certDir = host.certDir;
  se = await startNginx({ accessLog: true, x509: { cert: host.cert, key: host.key, caFile: ca.caFile, authorised: [USER_DN] } });
  fs.mkdirSync(path.join(se.root, 'lofar', 'L229507'), { recursive: true });
  fs.writeFileSync(path.join(se.root, 'lofar', 'L229507', 'SB100.dat'), randomBytes(3 << 20));
}, 300_000);

afterAll(async () => {
  await se?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

afterEach(() => {
  for (const k of ENV_KEYS) delete process.env[k];
});

let n = 0;
function proxy(opts: Parameters<TestCa['makeProxy']>[1] = {}, from: TestCa = ca): string {
  const file = from.makeProxy(path.join(work, `proxy-${++n}.pem`), opts);
  keys.push(proxyTlsCredentials(file).key);
  return file;
}

/** A node using `proxyFile` (read from the environment at construction, as on a worker node). */
function node(proxyFile: string, extra: Partial<WorkerNodeArgs> = {}) {
  process.env.X509_USER_PROXY = proxyFile;
  process.env.X509_CERT_DIR = certDir;
  return createWorkerNode(
    { retryDelay: '0.2s', transferRetries: 1, transferTimeout: '120s', workdir: work, macaroons: path.join(work, 'none.json'), ...extra },
    createLogger('node', { level: 'silent', pretty: false }),
  );
}

const harness = (spec: Partial<NewToken>) => phaseHarness(work, spec);

function withOutput(h: ReturnType<typeof harness>) {
  fs.mkdirSync(h.ctx.outputDir, { recursive: true });
  fs.writeFileSync(path.join(h.ctx.outputDir, 'result.txt'), 'calibrated\n');
  return h.ctx;
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

function assertNoKey(...texts: string[]) {
  for (const t of texts) for (const k of keys) assert.ok(!t.includes(k.split('\n')[1]!), 'a proxy key leaked into a log line or error');
}

const input = () => `${se.httpsUrl}/lofar/L229507/SB100.dat`;
/** The statuses the SE gave since `from` (its access log) */
const statuses = (from: number) => se.requests().slice(from).map((l) => l.split(' ')[2]);

/** What the SE answers a GET presenting `file` as client certificate (or none): the SE's own verdict. */
function seAnswers(file: string | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(input(), { ca: fs.readFileSync(ca.caFile), ...(file ? proxyTlsCredentials(file) : {}), agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error('no answer from the SE in 30 s')));
  });
}

test('the SE itself: a valid proxy is let in; none, an expired one, an unlisted DN and an untrusted CA are refused', async () => {
  assert.equal(await seAnswers(proxy()), 200);
  assert.equal(await seAnswers(null), 401);
  assert.equal(await seAnswers(proxy({ notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) })), 401);
  assert.equal(await seAnswers(proxy({ userDn: OTHER_DN })), 403);
  // Same DN as the listed user, from a CA of its own: the chain does not verify.
  const rogue = createTestCa(path.join(work, 'rogue-ca'));
  assert.equal(await seAnswers(proxy({}, rogue)), 401);
});

for (const tool of ['builtin', 'gfal'] as const) {
  describe(`${tool} client`, () => {
    const skip = tool === 'gfal' && !gfalAvailable();

    test.skipIf(skip)('proxy as client certificate: stage-in and stage-out; refused without it', async () => {
      const wn = node(proxy(), { transferTool: tool });
      const h = harness({ input: [{ url: input(), auth: 'proxy' }], results: `${se.httpsUrl}/lofar/out/${tool}-proxy.tar` });
      const before = se.requests().length;
      await wn.stageIn(h.ctx);
      assert.equal(fs.statSync(path.join(h.ctx.inputDir, 'SB100.dat')).size, 3 << 20);
      assert.equal(h.ctx.env.X509_USER_PROXY, process.env.X509_USER_PROXY, 'the step is told where the proxy is');
      const out = await wn.stageOut(withOutput(h));
      assert.equal(out.length, 1);
      assert.equal(fs.statSync(path.join(se.root, 'lofar', 'out', `${tool}-proxy.tar`)).size, out[0]!.size);
      // gfal2 also probes with POST, which nginx's WebDAV refuses on a directory (403) to anyone.
      const refusals = se.requests().slice(before).filter((l) => / 40[13]$/.test(l) && !l.startsWith('POST '));
      assert.deepEqual(refusals, [], 'nothing refused');

      // No proxy on the node: an input that names it is given back before anything moves …
      const missing = path.join(work, 'no-such-proxy');
      const needs = harness({ input: [{ url: input(), auth: 'proxy' }] });
      const given = await failure(node(missing, { transferTool: tool }).stageIn(needs.ctx));
      assert.equal(given.reason, 'no usable grid proxy');
      assert.equal(given.tokenExitCode, EXIT.credentials);
      assert.equal(given.retryable, true);
      assert.ok(!fs.existsSync(path.join(needs.ctx.inputDir, 'SB100.dat')), 'nothing moved');

      // … and one that does not is refused by the SE (401, not retried), both ways.
      const bare = harness({ input: [{ url: input() }], results: `${se.httpsUrl}/lofar/out/${tool}-bare.tar` });
      const from = se.requests().length;
      const refused = await failure(node(missing, { transferTool: tool, transferRetries: 3 }).stageIn(bare.ctx));
      assert.equal(refused.reason, 'download failed');
      assert.equal(refused.retryable, false);
      assert.match(refused.message, /401|denied|unauthori[sz]ed/i);
      const noUpload = await failure(node(missing, { transferTool: tool }).stageOut(withOutput(bare)));
      assert.equal(noUpload.reason, 'upload failed');
      assert.match(noUpload.message, /401|denied|unauthori[sz]ed/i);
      assert.ok(!fs.existsSync(path.join(se.root, 'lofar', 'out', `${tool}-bare.tar`)));
      assert.ok(statuses(from).length > 0 && statuses(from).every((s) => s === '401'), se.requests().slice(from).join(', '));
      assertNoKey(h.logs(), bare.logs(), given.message, refused.message, noUpload.message, JSON.stringify(out));
    });

    test.skipIf(skip)('a proxy of a user the SE does not list: 403, not retried; an expired proxy: refused', async () => {
      const other = harness({ input: [{ url: input(), auth: 'proxy' }] });
      const from = se.requests().length;
      const denied = await failure(node(proxy({ userDn: OTHER_DN }), { transferTool: tool, transferRetries: 3 }).stageIn(other.ctx));
      assert.equal(denied.reason, 'download failed');
      assert.equal(denied.retryable, false);
      assert.match(denied.message, /403|denied|forbidden/i);
      assert.deepEqual(statuses(from).slice(0, 1), ['403']);

      // Expired: the agent gives the token back before anything moves (it never presents it).
      const expired = proxy({ notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
      const late = harness({ input: [{ url: input(), auth: 'proxy' }] });
      const given = await failure(node(expired, { transferTool: tool }).stageIn(late.ctx));
      assert.equal(given.reason, 'no usable grid proxy');
      assert.match(given.message, /expired/);
      assertNoKey(other.logs(), late.logs(), denied.message, given.message);
    });
  });
}
