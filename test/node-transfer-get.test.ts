/**
 * The built-in client's GET, which reads HTTP/1.1 off the socket itself (agent/node/transfer/
 * http-get.ts, http1.ts): against raw TCP servers on 127.0.0.1 that frame bodies every way a
 * server may (Content-Length, chunked in pieces split anywhere, until close), redirect, answer
 * 1xx first, stop in the middle, send garbage or stall; and an https server that checks the grid
 * proxy as client certificate. Checksums are checked against Python's zlib.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { createWorkerNode } from '../agent/node/index.js';
import { gridTls } from '../agent/node/tls.js';
import { httpTransfer } from '../agent/node/transfer/http.js';
import { ChunkedBody, parseHead, ProtocolError } from '../agent/node/transfer/http1.js';
import { TransferError } from '../agent/node/transfer/types.js';
import { PhaseError } from '../agent/phases.js';
import { createLogger } from '../server/log.js';
import { EXIT, newToken } from '../server/token.js';
import { createTestCa } from './helpers/proxy.js';
import { attemptParts } from './helpers/phase.js';
import { zlibAdler32 as pyAdler32 } from './helpers/zlib-adler32.js';

let work: string;
beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-get-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** Chunked coding of `data` in chunks of the given sizes (cycled), with an extension and a trailer. */
function chunked(data: Buffer, sizes: number[]): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0, i = 0; at < data.length; i++) {
    const piece = data.subarray(at, at + sizes[i % sizes.length]!);
    parts.push(Buffer.from(`${piece.length.toString(16)}${i % 3 === 1 ? ';name=value' : ''}\r\n`), piece, Buffer.from('\r\n'));
    at += piece.length;
  }
  parts.push(Buffer.from('0\r\nX-Checksum: none\r\n\r\n'));
  return Buffer.concat(parts);
}

describe('HTTP/1.1 response reading', () => {
  test('the head: status, text, headers case-folded, repeats joined; garbage refused', () => {
    const head = parseHead('HTTP/1.1 302 Found\r\nLocation: /b\r\nX-A: 1\r\nx-a: 2');
    assert.equal(head.status, 302);
    assert.equal(head.statusText, 'Found');
    assert.equal(head.headers.get('location'), '/b');
    assert.equal(head.headers.get('x-a'), '1, 2');
    assert.throws(() => parseHead('SSH-2.0-OpenSSH_9.2'), ProtocolError);
    assert.throws(() => parseHead('HTTP/1.1 200 OK\r\nno colon here'), ProtocolError);
  });

  test('chunked bodies decode whatever the pieces the bytes arrive in', () => {
    const data = randomBytes(70_000);
    const wire = chunked(data, [1, 4096, 3, 30_000, 17]);
    for (const piece of [1, 2, 3, 7, 100, 4099, wire.length]) {
      // As the socket code uses it: pieces appended after the body bytes kept so far.
      const buf = Buffer.alloc(wire.length);
      const body = new ChunkedBody();
      let fill = 0;
      for (let at = 0; at < wire.length; at += piece) {
        const n = Math.min(piece, wire.length - at);
        wire.copy(buf, fill, at, at + n);
        fill += body.take(buf, fill, fill + n);
      }
      assert.ok(body.complete, `complete with pieces of ${piece}`);
      assert.ok(buf.subarray(0, fill).equals(data), `same bytes with pieces of ${piece}`);
    }
  });

  test('a chunked body cut short or malformed says so', () => {
    const short = new ChunkedBody();
    short.take(Buffer.from('5\r\nhel'), 0, 6);
    assert.match(short.endedEarly()!, /middle of a chunked body, after 3 bytes/);
    assert.throws(() => new ChunkedBody().take(Buffer.from('zz\r\n'), 0, 4), /bad chunk size line "zz"/);
    assert.throws(() => new ChunkedBody().take(Buffer.from('2\r\nabc\r\n'), 0, 8), /longer than its size/);
  });
});

/** A server speaking raw HTTP/1.1: `routes` answer by path, writing bytes to the socket themselves. */
async function rawServer(routes: Record<string, (socket: net.Socket, base: string) => void>): Promise<{ base: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const sockets = new Set<net.Socket>();
  let base = '';
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let text = '';
    socket.on('data', (c: Buffer) => {
      if (text.includes('\r\n\r\n')) return;
      text += c.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      requests.push(text);
      const reqPath = text.split(' ')[1]!;
      const route = routes[reqPath];
      if (route) route(socket, base);
      else socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    base,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Writes `bytes` in pieces of `piece`, one per timer tick, then ends (or not). */
function trickle(socket: net.Socket, bytes: Buffer, piece: number, end = true): void {
  let at = 0;
  const next = () => {
    if (socket.destroyed) return;
    if (at >= bytes.length) return void (end && socket.end());
    socket.write(bytes.subarray(at, (at += piece)));
    setTimeout(next, 1);
  };
  next();
}

describe('built-in client: GET against servers that frame, redirect and fail every way', () => {
  const big = randomBytes((5 << 20) + 4321); // several slots and an odd tail
  const small = randomBytes(100_000);
  let srv: Awaited<ReturnType<typeof rawServer>>;
  const lengthHead = (n: number) => `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${n}\r\n\r\n`;

  beforeAll(async () => {
    srv = await rawServer({
      '/big': (s) => s.end(Buffer.concat([Buffer.from(lengthHead(big.length)), big])),
      // The head itself arrives in pieces.
      '/slow-head': (s) => trickle(s, Buffer.concat([Buffer.from(lengthHead(small.length)), small]), 7000),
      '/chunked': (s) => trickle(s, Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(small, [1000, 3, 50_000])]), 997),
      '/chunked-big': (s) => s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(big, [1 << 20, 12345, 700_000])])),
      '/until-close': (s) => trickle(s, Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'), small]), 30_000),
      '/interim': (s) => s.end(Buffer.concat([Buffer.from('HTTP/1.1 100 Continue\r\n\r\n' + lengthHead(small.length)), small])),
      '/extra': (s) => s.end(lengthHead(5) + 'helloEXTRA BYTES'),
      '/short': (s) => s.end(Buffer.concat([Buffer.from(lengthHead(small.length)), small.subarray(0, 30_000)])),
      '/short-chunked': (s) => s.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), chunked(small, [40_000]).subarray(0, 50_000)])),
      '/bad-chunk': (s) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n'),
      '/garbage': (s) => s.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'),
      '/nothing': (s) => s.end(),
      '/stall': (s) => s.write(lengthHead(small.length) + 'a few bytes'),
      '/gone': (s) => s.end('HTTP/1.1 410 Gone\r\nContent-Length: 4\r\n\r\ngone'),
      '/busy': (s) => s.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n'),
      '/door/file': (s) => s.end('HTTP/1.1 302 Found\r\nLocation: ../pool/file?token=1\r\nContent-Length: 0\r\n\r\n'),
      '/pool/file?token=1': (s, base) => s.end(`HTTP/1.1 307 Temporary Redirect\r\nLocation: ${base}/big\r\nContent-Length: 0\r\n\r\n`),
      '/elsewhere': (s) => s.end('HTTP/1.1 302 Found\r\nLocation: ftp://user:pw@ftp.example.org/file\r\nContent-Length: 0\r\n\r\n'),
      '/loop': (s) => s.end('HTTP/1.1 301 Moved Permanently\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n'),
    });
  });
  afterAll(() => srv.close());

  const dest = () => path.join(work, `got-${process.hrtime.bigint()}`);
  const get = (p: string, file = dest(), signal = AbortSignal.timeout(60_000)) => httpTransfer().download(`${srv.base}${p}`, file, { signal });
  async function failure(p: string, signal?: AbortSignal): Promise<TransferError> {
    const err = await get(p, dest(), signal).then(
      () => assert.fail(`GET ${p} should fail`),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TransferError, `expected a TransferError, got ${String(err)}`);
    assert.ok(err.message.startsWith(`${srv.base}${p}: `), err.message);
    return err;
  }

  for (const [p, data] of [
    ['/big', big],
    ['/slow-head', small],
    ['/chunked', small],
    ['/chunked-big', big],
    ['/until-close', small],
    ['/interim', small],
  ] as const) {
    test(`${p}: the file has every byte, size and adler32 match`, async () => {
      const file = dest();
      const got = await get(p, file);
      assert.ok(fs.readFileSync(file).equals(data));
      assert.deepEqual(got, { size: data.length, adler32: pyAdler32(data) });
    });
  }

  test('the request: GET, Host, Connection: close, Basic auth from the URL and never the password in the request line', async () => {
    const url = srv.base.replace('http://', 'http://alice:s3cr%40t@') + '/big';
    await httpTransfer().download(url, dest(), { signal: AbortSignal.timeout(60_000) });
    const req = srv.requests.at(-1)!;
    assert.match(req, /^GET \/big HTTP\/1\.1\r\n/);
    assert.match(req, new RegExp(`\r\nHost: ${srv.base.slice('http://'.length)}\r\n`));
    assert.match(req, /\r\nConnection: close\r\n/);
    assert.ok(req.includes(`Authorization: Basic ${Buffer.from('alice:s3cr@t').toString('base64')}`), req);
    assert.ok(!req.split('\r\n')[0]!.includes('s3cr'));
  });

  test('bytes after the Content-Length are not part of the file', async () => {
    const file = dest();
    assert.equal((await get('/extra', file)).size, 5);
    assert.equal(fs.readFileSync(file, 'utf8'), 'hello');
  });

  test('relative and absolute redirects are followed (door → pool → file); a loop and a redirect away from http stop', async () => {
    const file = dest();
    const got = await get('/door/file', file);
    assert.equal(got.size, big.length);
    assert.ok(srv.requests.some((r) => r.startsWith('GET /pool/file?token=1 ')));
    const err = await failure('/loop');
    assert.match(err.causeText, /more than 5 redirects/);
    assert.equal(err.retryable, false);
    const elsewhere = await failure('/elsewhere');
    assert.match(elsewhere.causeText, /^redirected to ftp:\/\/.*ftp\.example\.org\/file, not http\(s\)$/);
    assert.ok(!elsewhere.message.includes(':pw@'), elsewhere.message);
    assert.equal(elsewhere.retryable, false);
  });

  test('fewer bytes than Content-Length: a retryable error saying how many arrived', async () => {
    const err = await failure('/short');
    assert.equal(err.causeText, `connection ended after 30000 of ${small.length} bytes`);
    assert.equal(err.retryable, true);
  });

  test('a chunked body cut off, a malformed one, garbage, and no answer at all: clear errors', async () => {
    assert.match((await failure('/short-chunked')).causeText, /connection ended in the middle of a chunked body/);
    const bad = await failure('/bad-chunk');
    assert.match(bad.causeText, /bad chunk size line "not-hex"/);
    assert.equal(bad.retryable, false);
    assert.match((await failure('/garbage')).causeText, /not an HTTP\/1\.x response: "SSH-2\.0/);
    const none = await failure('/nothing');
    assert.equal(none.causeText, 'connection closed before the response headers');
    assert.equal(none.retryable, true);
  });

  test('status answers: 410 not retryable, 503 retryable, each with its text', async () => {
    const gone = await failure('/gone');
    assert.equal(gone.causeText, '410 Gone');
    assert.equal(gone.retryable, false);
    const busy = await failure('/busy');
    assert.equal(busy.causeText, '503 Service Unavailable');
    assert.equal(busy.retryable, true);
  });

  test('a server that stalls mid-body is ended by the signal (the per-file timeout), not waited for', async () => {
    const err = await get('/stall', dest(), AbortSignal.timeout(500)).then(
      () => assert.fail('should time out'),
      (e: unknown) => e as Error,
    );
    assert.equal(err.name, 'TimeoutError');
  });

  test('stage-in: a truncated body is retried, then fails naming URL and cause; nothing reaches the step', async () => {
    const scratch = fs.mkdtempSync(path.join(work, 'scratch-'));
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    const url = `${srv.base}/short`;
    const token = newToken({ obsid: 'L1', step: 's', subbands: [1], input: [{ url }] });
    const ctx = {
      token,
      ...attemptParts(token),
      scratchDir: scratch,
      inputDir: path.join(scratch, 'input'),
      outputDir: path.join(scratch, 'output'),
      env: {},
      log: createLogger('test', { destination: stream, pretty: false, level: 'debug' }),
      signal: new AbortController().signal,
    };
    const node = createWorkerNode({ retryDelay: '0.1s', transferRetries: 1, transferTimeout: '60s', workdir: work }, createLogger('node', { level: 'silent', pretty: false }));
    const err = await node.stageIn(ctx).then(
      () => assert.fail('stage-in should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PhaseError, String(err));
    assert.equal(err.tokenExitCode, EXIT.downloadFailed);
    assert.equal(err.retryable, true);
    assert.ok(err.message.includes(`${url}: connection ended after 30000 of ${small.length} bytes (after 2 attempts)`), err.message);
    assert.equal(lines.filter((l) => (JSON.parse(l) as { msg: string }).msg === 'download failed, retrying').length, 1);
    assert.deepEqual(fs.readdirSync(ctx.inputDir), []);
    assert.ok(!fs.existsSync(path.join(scratch, 'download')));
  });
});

describe('built-in client: GET over https', () => {
  let dir: string;
  let server: https.Server;
  let base: string;
  const body = randomBytes((3 << 20) + 99);
  const peers: string[] = [];
  let tlsMaterial: ReturnType<typeof gridTls>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-get-tls-'));
    const ca = createTestCa(path.join(dir, 'ca'));
    const host = ca.makeHost(path.join(dir, 'host'));
    const proxy = ca.makeProxy(path.join(dir, 'proxy'));
    tlsMaterial = gridTls(() => proxy, { X509_CERT_DIR: host.certDir });
    server = https.createServer(
      // Proxy chains need RFC 3820 support to verify; the test only looks at what was presented.
      { key: host.key, cert: host.cert, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        peers.push((req.socket as TLSSocket).getPeerX509Certificate()?.subject.replace(/\n/g, '/') ?? '');
        if (req.url === '/chunked') {
          res.write(body.subarray(0, 1000));
          res.end(body.subarray(1000));
        } else if (req.url === '/moved') {
          res.writeHead(302, { Location: '/data' }).end();
        } else {
          res.writeHead(200, { 'Content-Length': body.length }).end(body);
        }
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const p of ['/data', '/chunked', '/moved']) {
    test(`${p}: the proxy is the client certificate, the body arrives whole`, async () => {
      const file = path.join(dir, `got-${p.slice(1)}`);
      const got = await httpTransfer(tlsMaterial).download(`${base}${p}`.replace('https:', p === '/data' ? 'davs:' : 'https:'), file, { signal: AbortSignal.timeout(60_000) });
      assert.deepEqual(got, { size: body.length, adler32: pyAdler32(body) });
      assert.ok(fs.readFileSync(file).equals(body));
      assert.ok(peers.at(-1)!.includes('CN=Jane Tester'), peers.at(-1));
    });
  }

  test('a server certificate nobody trusts: refused with the reason', async () => {
    const err = await httpTransfer()
      .download(`${base}/data`, path.join(dir, 'untrusted'), { signal: AbortSignal.timeout(60_000) })
      .then(
        () => assert.fail('should be refused'),
        (e: unknown) => e as Error & { code?: string },
      );
    assert.match(`${err.code} ${err.message}`, /certificate/i);
  });
});
