/**
 * Stage-in and stage-out against a real WebDAV storage element (nginx on loopback): over http and
 * dav with the built-in client and through gfal-copy; checksums checked against Python's zlib.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, test } from 'vitest';
import * as tar from 'tar';
import { createWorkerNode, type WorkerNodeArgs } from '../agent/node/index.js';
import { httpTransfer } from '../agent/node/transfer/http.js';
import { TransferError } from '../agent/node/transfer/types.js';
import { PhaseError, type PhaseContext } from '../agent/phases.js';
import { createLogger } from '../server/log.js';
import { EXIT, type NewToken } from '../server/token.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { phaseHarness } from './helpers/phase.js';
import { zlibAdler32File as pyAdler32 } from './helpers/zlib-adler32.js';

let nginx: Nginx;
let work: string;

beforeAll(async () => {
  nginx = await startNginx();
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-transfer-'));
  // A measurement set as the LTA delivers it: a directory tree in a .tar.
  const ms = path.join(work, 'src', 'L229507_SB100_uv.MS');
  fs.mkdirSync(path.join(ms, 'ANTENNA'), { recursive: true });
  fs.writeFileSync(path.join(ms, 'table.dat'), Buffer.alloc(3 << 20, 7));
  fs.writeFileSync(path.join(ms, 'ANTENNA', 'table.f0'), 'antennas\n');
  fs.mkdirSync(path.join(nginx.root, 'lofar', 'L229507'), { recursive: true });
  await tar.c({ file: path.join(nginx.root, 'lofar', 'L229507', 'L229507_SB100_uv.MS_a1b2c3d4.tar'), cwd: path.join(work, 'src') }, ['L229507_SB100_uv.MS']);
});

afterAll(async () => {
  await nginx.close();
  fs.rmSync(work, { recursive: true, force: true });
});

const msTar = () => path.join(nginx.root, 'lofar', 'L229507', 'L229507_SB100_uv.MS_a1b2c3d4.tar');

interface Harness {
  ctx: PhaseContext;
  logs: () => Array<Record<string, unknown>>;
}

/** phaseHarness with its debug log as records. */
function context(spec: Partial<NewToken>): Harness {
  const { ctx, logs } = phaseHarness(work, spec);
  return { ctx, logs: () => logs().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const node = (extra: Partial<WorkerNodeArgs> = {}) =>
  createWorkerNode({ retryDelay: '0.2s', transferRetries: 2, transferTimeout: '60s', workdir: work, ...extra }, createLogger('node', { level: 'silent', pretty: false }));

async function rejection(p: Promise<unknown>): Promise<PhaseError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PhaseError, `expected a PhaseError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the phase to fail');
}

describe('stage-in', () => {
  for (const [label, scheme, args] of [
    ['http, built-in client', 'http', {}],
    ['dav, built-in client', 'dav', {}],
    ['http through gfal-copy', 'http', { transferTool: 'gfal' }],
  ] as const) {
    test(`${label}: fetched, checksummed and unpacked`, async () => {
      const url = `${nginx.url.replace('http', scheme)}/lofar/L229507/L229507_SB100_uv.MS_a1b2c3d4.tar`;
      const { ctx, logs } = context({ input: [{ url, adler32: pyAdler32(msTar()), size: fs.statSync(msTar()).size }] });
      await node(args as Partial<WorkerNodeArgs>).stageIn(ctx);
      assert.deepEqual(fs.readdirSync(ctx.inputDir), ['L229507_SB100_uv.MS']);
      assert.equal(fs.statSync(path.join(ctx.inputDir, 'L229507_SB100_uv.MS', 'table.dat')).size, 3 << 20);
      assert.equal(fs.readFileSync(path.join(ctx.inputDir, 'L229507_SB100_uv.MS', 'ANTENNA', 'table.f0'), 'utf8'), 'antennas\n');
      assert.ok(!fs.existsSync(path.join(ctx.scratchDir, 'download')), 'the downloaded tar is removed after unpacking');
      const staged = logs().find((l) => l.msg === 'input staged in');
      assert.equal(staged?.verified, true);
    });
  }

  test('a plain file is placed as is', async () => {
    fs.writeFileSync(path.join(nginx.root, 'lofar', 'parset.txt'), 'msin=foo\n');
    const { ctx } = context({ input: [{ url: `${nginx.url}/lofar/parset.txt` }] });
    await node().stageIn(ctx);
    assert.equal(fs.readFileSync(path.join(ctx.inputDir, 'parset.txt'), 'utf8'), 'msin=foo\n');
  });

  test('checksum mismatch: PhaseError, the file is deleted, nothing reaches the step', async () => {
    const { ctx } = context({ input: [{ url: `${nginx.url}/lofar/L229507/L229507_SB100_uv.MS_a1b2c3d4.tar`, adler32: '0badc0de' }] });
    const err = await rejection(node().stageIn(ctx));
    assert.equal(err.reason, 'checksum mismatch');
    assert.equal(err.tokenExitCode, EXIT.checksumMismatch);
    assert.equal(err.retryable, false);
    assert.match(err.message, /L229507_SB100_uv\.MS_a1b2c3d4\.tar.*expected 0badc0de/);
    assert.deepEqual(fs.readdirSync(ctx.inputDir), []);
    assert.ok(!fs.existsSync(path.join(ctx.scratchDir, 'download')));
  });

  test('404: the error names the URL and is not retried', async () => {
    const url = `${nginx.url}/lofar/L229507/L229507_SB999_uv.MS_00000000.tar`;
    const { ctx, logs } = context({ input: [{ url }] });
    const err = await rejection(node().stageIn(ctx));
    assert.equal(err.reason, 'download failed');
    assert.equal(err.tokenExitCode, EXIT.downloadFailed);
    assert.equal(err.retryable, false);
    assert.ok(err.message.includes(url), err.message);
    assert.match(err.message, /404/);
    assert.equal(logs().filter((l) => l.msg === 'download failed, retrying').length, 0);
  });

  test('404 through gfal-copy: the error names the URL', async () => {
    const url = `${nginx.url}/lofar/missing.tar`;
    const { ctx } = context({ input: [{ url }] });
    const err = await rejection(node({ transferTool: 'gfal' }).stageIn(ctx));
    assert.ok(err.message.includes(url), err.message);
    assert.equal(err.retryable, false);
  });

  test('storage element down: retried with backoff, then a clear error', async () => {
    const se = await startNginx();
    fs.writeFileSync(path.join(se.root, 'f.dat'), 'x');
    await se.stop();
    try {
      const url = `${se.url}/f.dat`;
      const { ctx, logs } = context({ input: [{ url }] });
      const err = await rejection(node().stageIn(ctx));
      assert.equal(err.reason, 'download failed');
      assert.equal(err.retryable, true);
      assert.ok(err.message.includes(url));
      assert.match(err.message, /connection refused \(after 3 attempts\)/);
      assert.equal(logs().filter((l) => l.msg === 'download failed, retrying').length, 2);
    } finally {
      await se.close();
    }
  });
});

describe('stage-out', () => {
  const template = '${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar';

  function withOutputs(spec: Partial<NewToken> = {}): Harness {
    const h = context(spec);
    fs.mkdirSync(path.join(h.ctx.outputDir, 'L229507_SB100_uv.dppp.MS'), { recursive: true });
    fs.writeFileSync(path.join(h.ctx.outputDir, 'L229507_SB100_uv.dppp.MS', 'table.dat'), Buffer.alloc(1 << 20, 3));
    fs.writeFileSync(path.join(h.ctx.outputDir, 'calib.h5'), 'solutions');
    return h;
  }

  for (const [label, args] of [
    ['built-in client (dav)', { resultsBase: '' }],
    ['gfal-copy', { transferTool: 'gfal' }],
  ] as const) {
    test(`${label}: the tar lands on the SE with the right size and adler32`, async () => {
      const base = label === 'gfal-copy' ? `${nginx.url}/results-gfal` : `${nginx.url.replace('http', 'dav')}/results`;
      const { ctx } = withOutputs({ results: template });
      const outputs = await node({ ...(args as Partial<WorkerNodeArgs>), resultsBase: base }).stageOut(ctx);
      assert.equal(outputs.length, 1);
      const rel = `${label === 'gfal-copy' ? 'results-gfal' : 'results'}/L229507/cal1/${ctx.token._id}.tar`;
      assert.equal(outputs[0]!.url, `${base}/L229507/cal1/${ctx.token._id}.tar`);
      const stored = path.join(nginx.root, rel);
      assert.equal(outputs[0]!.size, fs.statSync(stored).size);
      assert.equal(outputs[0]!.adler32, pyAdler32(stored));
      const names: string[] = [];
      await tar.t({ file: stored, onReadEntry: (e) => names.push(e.path) });
      assert.ok(names.includes('calib.h5') && names.some((p) => p.startsWith('L229507_SB100_uv.dppp.MS/')), names.join(','));
      assert.ok(!fs.existsSync(path.join(ctx.scratchDir, `${ctx.token._id}.tar`)), 'the packed tar is removed');
    });
  }

  test('an existing result is not overwritten unless the token says overwrite', async () => {
    const url = `${nginx.url}/results/kept/L229507_cal1_SB200.tar`;
    fs.mkdirSync(path.join(nginx.root, 'results', 'kept'), { recursive: true });
    fs.writeFileSync(path.join(nginx.root, 'results', 'kept', 'L229507_cal1_SB200.tar'), 'earlier result');
    const { ctx } = withOutputs({ results: url });
    const err = await rejection(node().stageOut(ctx));
    assert.equal(err.reason, 'output exists');
    assert.equal(err.tokenExitCode, EXIT.outputExists);
    assert.ok(err.message.includes(url));
    assert.equal(fs.readFileSync(path.join(nginx.root, 'results', 'kept', 'L229507_cal1_SB200.tar'), 'utf8'), 'earlier result');

    const again = withOutputs({ results: url, overwrite: true });
    const [out] = await node().stageOut(again.ctx);
    assert.equal(out!.size, fs.statSync(path.join(nginx.root, 'results', 'kept', 'L229507_cal1_SB200.tar')).size);
  });

  /** What lies in a directory of the SE (or a local directory): to show that no attempt's upload is left beside the result. */
  const listing = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

  for (const [label, args, where] of [
    ['dav, built-in client (MOVE)', {}, 'dav'],
    ['http through gfal-copy (gfal-rename)', { transferTool: 'gfal' }, 'http'],
    ['file://', {}, 'file'],
  ] as const) {
    const base = (dir: string) => (where === 'file' ? pathToFileURL(path.join(work, 'file-se', dir)).href : `${nginx.url.replace('http', where)}/${where}-${dir}`);
    const local = (url: string) => (where === 'file' ? fileURLToPath(url) : path.join(nginx.root, new URL(url.replace(/^dav/, 'http')).pathname));

    test(`${label}: a retry replaces what an earlier attempt of the same token published, and says which attempt's output was kept`, async () => {
      const first = withOutputs({ results: `${base('retry')}/\${TOKEN_ID}.tar` });
      const [out1] = await node(args as Partial<WorkerNodeArgs>).stageOut(first.ctx);
      assert.equal(out1!.attempt, 1);
      // The agent died before recording the outcome: the next attempt of the same token, with what the first recorded.
      const second = withOutputs({ results: first.ctx.token.results!, subbands: first.ctx.token.subbands });
      second.ctx.token.stage_out_uploads = first.ctx.token.stage_out_uploads;
      second.ctx.token.attempts = 2;
      second.ctx.token.history = [{ attempt: 1, claim_id: first.ctx.claimId, owner: 'a', hostname: 'h', batch_job_id: null, start: 1, end: 2, exit_code: null, reason: 'lease expired' }];
      fs.writeFileSync(path.join(second.ctx.outputDir, 'calib.h5'), 'solutions of attempt 2');
      const [out2] = await node(args as Partial<WorkerNodeArgs>).stageOut(second.ctx);
      assert.equal(out2!.url, out1!.url);
      assert.equal(out2!.attempt, 2, "the output kept is the second attempt's");
      const stored = local(out2!.url);
      assert.equal(fs.statSync(stored).size, out2!.size);
      assert.equal(pyAdler32(stored), out2!.adler32);
      assert.deepEqual(listing(path.dirname(stored)), [path.basename(stored)], 'one published file, no attempt\'s upload left beside it');
      assert.deepEqual(second.ctx.token.stage_out_uploads!.map((u) => [u.attempt, u.claim_id, u.url]), [[1, first.ctx.claimId, out1!.url], [2, second.ctx.claimId, out2!.url]]);
      const noted = second.logs().find((l) => l.msg?.toString().startsWith('an earlier attempt of this token published'));
      assert.equal(noted?.earlier_attempt, 1);
      assert.equal(noted?.verified, where === 'file' ? 'size and adler32' : 'size');
    });

    test(`${label}: data this token did not produce is not overwritten`, async () => {
      const foreign = withOutputs({ results: `${base('foreign')}/\${TOKEN_ID}.tar` });
      const url = foreign.ctx.token.results!.replace('${TOKEN_ID}', foreign.ctx.token._id);
      fs.mkdirSync(path.dirname(local(url)), { recursive: true });
      fs.writeFileSync(local(url), 'somebody else\'s result');
      const cases: Array<[string, Harness]> = [['no upload recorded', foreign]];
      // Recorded uploads of this token, but what lies there now is not one of them: another size; on file://, the same size but other bytes.
      const resized = withOutputs({ results: foreign.ctx.token.results!, subbands: foreign.ctx.token.subbands });
      resized.ctx.token.stage_out_uploads = [{ url, size: 5, adler32: '0badc0de', attempt: 1, claim_id: 'c1', time: 1 }];
      cases.push(['another size', resized]);
      if (where === 'file') {
        const rewritten = withOutputs({ results: foreign.ctx.token.results!, subbands: foreign.ctx.token.subbands });
        rewritten.ctx.token.stage_out_uploads = [{ url, size: fs.statSync(local(url)).size, adler32: '0badc0de', attempt: 1, claim_id: 'c1', time: 1 }];
        cases.push(['same size, other adler32', rewritten]);
      }
      for (const [what, h] of cases) {
        const err = await rejection(node(args as Partial<WorkerNodeArgs>).stageOut(h.ctx));
        assert.equal(err.reason, 'output exists', what);
        assert.equal(err.tokenExitCode, EXIT.outputExists, what);
        assert.equal(fs.readFileSync(local(url), 'utf8'), 'somebody else\'s result', what);
        assert.deepEqual(listing(path.dirname(local(url))), [path.basename(local(url))], what);
      }
    });
  }

  test('an upload an earlier attempt left unpublished (killed before the rename) is removed once a later attempt publishes', async () => {
    const h = withOutputs({ results: `${nginx.url}/leftover/\${TOKEN_ID}.tar` });
    const url = h.ctx.token.results!.replace('${TOKEN_ID}', h.ctx.token._id);
    const dir = path.join(nginx.root, 'leftover');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${h.ctx.token._id}.tar.part-c1`), 'half an upload');
    h.ctx.token.attempts = 2;
    h.ctx.token.history = [{ attempt: 1, claim_id: 'c1', owner: 'a', hostname: 'h', batch_job_id: null, start: 1, end: 2, exit_code: null, reason: 'lease expired' }];
    const [out] = await node().stageOut(h.ctx);
    assert.equal(out!.url, url);
    assert.deepEqual(listing(dir), [`${h.ctx.token._id}.tar`]);
  });

  test('an attempt that lost its claim before publishing leaves nothing at the results location', async () => {
    const h = withOutputs({ results: `${nginx.url}/superseded/\${TOKEN_ID}.tar` });
    const abort = new AbortController();
    h.ctx.signal = abort.signal;
    h.ctx.recordUpload = async () => {
      abort.abort(new Error('lease lost'));
      return false;
    };
    await assert.rejects(node().stageOut(h.ctx), /lease lost/);
    assert.deepEqual(listing(path.join(nginx.root, 'superseded')), []);
  });

  test('agent template with gzip and all placeholders', async () => {
    const { ctx } = withOutputs({ subbands: [300, 301, 309] });
    const outputs = await node({ results: '${RESULTS}/${OBSID}/SB${SUBBAND}/${STEP}-a${ATTEMPT}-${TOKEN_ID}.tar', resultsBase: `${nginx.url}/gz`, resultsGzip: true }).stageOut(ctx);
    assert.equal(outputs[0]!.url, `${nginx.url}/gz/L229507/SB300-309/cal1-a1-L229507_cal1_SB300-309.tar.gz`);
    const stored = path.join(nginx.root, 'gz/L229507/SB300-309/cal1-a1-L229507_cal1_SB300-309.tar.gz');
    assert.equal(fs.readFileSync(stored).subarray(0, 2).toString('hex'), '1f8b');
    assert.equal(outputs[0]!.adler32, pyAdler32(stored));
  });

  test('a bad template is refused with what is wrong', async () => {
    const { ctx } = withOutputs({ results: '${RESULTS}/${OBSERVATION}.tar' });
    const err = await rejection(node().stageOut(ctx));
    assert.equal(err.retryable, false);
    assert.match(err.message, /unknown placeholder \$\{OBSERVATION\}/);
    assert.match(err.message, /no --results-base/);
  });

  test('no results location: outputs are kept in <workdir>/results/<token id>', async () => {
    const { ctx } = withOutputs();
    assert.deepEqual(await node().stageOut(ctx), []);
    assert.equal(fs.readFileSync(path.join(work, 'results', ctx.token._id, 'calib.h5'), 'utf8'), 'solutions');
  });
});

/**
 * PUT corner cases nginx does not show: a storage element that answers before reading the body
 * (409 for a missing parent, a redirect from a door to a pool) and one that drops the connection.
 */
describe('built-in client: PUT against a picky storage element', () => {
  let server: http.Server;
  let base: string;
  const stored = new Map<string, Buffer>();
  const collections = new Set<string>(['/']);
  const methods: string[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const url = req.url!;
      methods.push(`${req.method} ${url}`);
      if (req.method === 'MKCOL') {
        collections.add(url);
        res.writeHead(201).end();
      } else if (req.method === 'PUT' && url.startsWith('/door/')) {
        res.writeHead(307, { Location: `${base}/pool/${url.slice('/door/'.length)}` }).end();
      } else if (req.method === 'PUT' && url.startsWith('/drop/')) {
        let seen = 0;
        req.on('data', (c: Buffer) => {
          seen += c.length;
          if (seen > 100_000) req.socket.destroy();
        });
      } else if (req.method === 'PUT' && !collections.has(url.slice(0, url.lastIndexOf('/') + 1))) {
        res.writeHead(409).end();
      } else if (req.method === 'PUT') {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          stored.set(url, Buffer.concat(chunks));
          res.writeHead(201).end();
        });
      } else res.writeHead(405).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** Several upload chunks and an odd tail. */
  function localFile(): { file: string; data: Buffer } {
    const data = randomBytes((3 << 20) + 12345);
    const file = path.join(work, `put-${randomBytes(4).toString('hex')}.dat`);
    fs.writeFileSync(file, data);
    return { file, data };
  }
  const signal = () => AbortSignal.timeout(60_000);

  test('409 for a missing parent (answered before the body): MKCOL each level, then the whole file', async () => {
    const { file, data } = localFile();
    const sent = await httpTransfer().upload(file, `${base}/a/b/result.dat`, { signal: signal() });
    assert.deepEqual(sent, { size: data.length, adler32: pyAdler32(file) });
    assert.ok(stored.get('/a/b/result.dat')?.equals(data));
    assert.ok(methods.includes('MKCOL /a/') && methods.includes('MKCOL /a/b/'), methods.join(', '));
  });

  test('a PUT redirected from a door to a pool sends the body there', async () => {
    const { file, data } = localFile();
    collections.add('/pool/');
    const sent = await httpTransfer().upload(file, `${base}/door/x.dat`, { signal: signal() });
    assert.deepEqual(sent, { size: data.length, adler32: pyAdler32(file) });
    assert.ok(stored.get('/pool/x.dat')?.equals(data));
  });

  test('connection dropped in the middle of the body: a retryable error, not a hang', async () => {
    const { file } = localFile();
    const err = await httpTransfer()
      .upload(file, `${base}/drop/y.dat`, { signal: signal() })
      .then(
        () => assert.fail('the upload should fail'),
        (e: unknown) => e,
      );
    assert.ok(!(err instanceof Error && err.name === 'TimeoutError'), 'failed at once, not by the timeout');
    assert.ok(!(err instanceof TransferError) || err.retryable, String(err));
  });
});
