/**
 * The grid proxy on the worker node: the agent's preflight refuses to claim work with a missing,
 * expired, short-lived or world-readable proxy, and https transfers present it as client certificate.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { createWorkerNode, type WorkerNodeArgs } from '../agent/node/index.js';
import { gridDn, ProxyError } from '../agent/node/proxy.js';
import { PhaseError } from '../agent/phases.js';
import { createLogger } from '../server/log.js';
import { EXIT, newToken } from '../server/token.js';
import { createTestCa, USER_DN, type TestCa } from './helpers/proxy.js';
import { attemptParts } from './helpers/phase.js';

let dir: string;
let ca: TestCa;
const savedEnv = { ...process.env };

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-proxy-'));
  ca = createTestCa(path.join(dir, 'ca'));
});

afterAll(() => {
  process.env = savedEnv;
  fs.rmSync(dir, { recursive: true, force: true });
});

const silent = createLogger('test', { level: 'silent', pretty: false });

/** A node whose proxy is `file`; the env is read at construction. */
function nodeWith(file: string, args: Partial<WorkerNodeArgs> = {}) {
  process.env.X509_USER_PROXY = file;
  return createWorkerNode({ requireProxy: 'yes', ...args }, silent);
}

async function refusal(p: Promise<unknown>): Promise<ProxyError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ProxyError, `expected a ProxyError, got ${String(err)}`);
    assert.equal(err.exitCode, EXIT.credentials);
    return err;
  }
  assert.fail('preflight should have refused');
}

describe('preflight', () => {
  test('a valid proxy passes, and provenance names its subject, never its contents', async () => {
    const file = ca.makeProxy(path.join(dir, 'valid'));
    const node = nodeWith(file);
    await node.preflight();
    const facts = await node.provenance({ scratchDir: dir } as never);
    const proxy = facts.proxy as { subject: string; expires: string };
    assert.equal(proxy.subject, `${USER_DN}/CN=100001`);
    assert.ok(Date.parse(proxy.expires) > Date.now());
    assert.ok(!JSON.stringify(facts).includes('BEGIN'), 'no PEM in provenance');
  });

  test('missing proxy: refused with where it looked and how to make one', async () => {
    const err = await refusal(nodeWith(path.join(dir, 'nope')).preflight());
    assert.match(err.message, /no grid proxy at .*nope/);
    assert.match(err.hint ?? '', /voms-proxy-init/);
  });

  test('default location /tmp/x509up_u<uid> when X509_USER_PROXY is unset', async () => {
    delete process.env.X509_USER_PROXY;
    const node = createWorkerNode({ requireProxy: 'yes' }, silent);
    const expected = `/tmp/x509up_u${os.userInfo().uid}`;
    if (fs.existsSync(expected)) await node.preflight();
    else assert.match((await refusal(node.preflight())).message, new RegExp(`no grid proxy at ${expected}`));
  });

  test('expired proxy: refused, naming the subject and when it expired', async () => {
    const file = ca.makeProxy(path.join(dir, 'expired'), { notBefore: new Date('2024-01-01T00:00:00Z'), notAfter: new Date('2024-01-02T00:00:00Z') });
    const err = await refusal(nodeWith(file).preflight());
    assert.match(err.message, /expired at 2024-01-02T00:00:00\.000Z/);
    assert.ok(err.message.includes(USER_DN));
  });

  test('less lifetime left than --min-proxy-lifetime: refused', async () => {
    const file = ca.makeProxy(path.join(dir, 'short'), { notAfter: new Date(Date.now() + 30 * 60_000) });
    const err = await refusal(nodeWith(file).preflight()); // default: 1 h
    assert.match(err.message, /left, less than the 1\.0 h required/);
    await nodeWith(file, { minProxyLifetime: '10m' }).preflight();
  });

  test('readable by others: refused with the chmod to run', async () => {
    const file = ca.makeProxy(path.join(dir, 'open'), { mode: 0o644 });
    const err = await refusal(nodeWith(file).preflight());
    assert.match(err.message, /readable by others \(mode 644\)/);
    assert.equal(err.hint, `Run: chmod 600 ${file}`);
  });

  test('not a certificate: refused', async () => {
    const file = path.join(dir, 'garbage');
    fs.writeFileSync(file, 'not a proxy\n', { mode: 0o600 });
    assert.match((await refusal(nodeWith(file).preflight())).message, /holds no certificate/);
  });

  test('auto: needed only when the work uses grid storage', async () => {
    const missing = path.join(dir, 'absent');
    await nodeWith(missing, { requireProxy: 'auto' }).preflight();
    await nodeWith(missing, { requireProxy: 'auto', results: 'https://example.org/r/${TOKEN_ID}.tar' }).preflight();
    await refusal(nodeWith(missing, { requireProxy: 'auto', results: 'srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/user/${TOKEN_ID}.tar' }).preflight());
    await nodeWith(missing, { requireProxy: 'no', results: 'gsiftp://gridftp.example.org/r/${TOKEN_ID}.tar' }).preflight();
  });

  test('a token with srm inputs is refused at stage-in without a usable proxy (not retried on this node)', async () => {
    const file = ca.makeProxy(path.join(dir, 'expired2'), { notBefore: new Date('2024-01-01T00:00:00Z'), notAfter: new Date('2024-01-02T00:00:00Z') });
    const node = nodeWith(file, { requireProxy: 'auto' });
    await node.preflight();
    const scratch = fs.mkdtempSync(path.join(dir, 'scratch-'));
    const token = newToken({ obsid: 'L229507', step: 'cal1', subbands: [1], input: [{ url: 'srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc0_012/229507/L229507_SB001_uv.MS_f6fc7fc5.tar' }] });
    const ctx = { token, ...attemptParts(token), scratchDir: scratch, inputDir: path.join(scratch, 'input'), outputDir: path.join(scratch, 'output'), env: {}, log: silent, signal: new AbortController().signal };
    await assert.rejects(node.stageIn(ctx), (err: unknown) => err instanceof PhaseError && err.reason === 'no usable grid proxy' && err.tokenExitCode === EXIT.credentials && /expired/.test(err.message));
  });
});

test('grid DN form', () => {
  assert.equal(gridDn('DC=org\nDC=terena\nCN=Jane Doe'), '/DC=org/DC=terena/CN=Jane Doe');
});

test('https: the proxy is presented as client certificate; X509_CERT_DIR is trusted', async () => {
  // A server certificate from the test CA, trusted through X509_CERT_DIR like /etc/grid-security/certificates.
  const host = ca.makeHost(path.join(dir, 'server'));

  const seen: string[] = [];
  const server = https.createServer(
    { key: host.key, cert: host.cert, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      seen.push(gridDn((req.socket as TLSSocket).getPeerX509Certificate()?.subject ?? ''));
      res.end('payload');
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const file = ca.makeProxy(path.join(dir, 'tls-proxy'));
    process.env.X509_CERT_DIR = host.certDir;
    const node = nodeWith(file, { requireProxy: 'auto' });
    const scratch = fs.mkdtempSync(path.join(dir, 'scratch-'));
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/data/file.txt`;
    const token = newToken({ obsid: 'L1', step: 's', subbands: [], input: [{ url }] });
    const ctx = { token, ...attemptParts(token), scratchDir: scratch, inputDir: path.join(scratch, 'input'), outputDir: path.join(scratch, 'output'), env: {}, log: silent, signal: new AbortController().signal };
    await node.stageIn(ctx);
    assert.equal(fs.readFileSync(path.join(ctx.inputDir, 'file.txt'), 'utf8'), 'payload');
    assert.equal(seen.length, 1);
    assert.ok(seen[0]!.startsWith(`${USER_DN}/CN=`), seen[0]);
  } finally {
    delete process.env.X509_CERT_DIR;
    await new Promise((r) => server.close(r));
  }
});
