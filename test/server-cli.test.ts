/**
 * `tokenpool server` as a real process: JSON start-up line, 0600 admin credentials, guarded requests,
 * clean SIGTERM (requests in flight finish, exit 0), restart on the same data with the same admin,
 * and clear errors for a port in use, a data directory in use or unwritable, a corrupt admin.json.
 */
import { afterAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI, runCli } from './helpers/cli.js';
import { rawRequest } from './helpers/http.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-server-cli-'));
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  url: string;
  credentialsFile: string;
  dataDir: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts `tokenpool server` and waits for its first stdout line. */
function startServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const child = spawn(process.execPath, [...CLI, 'server', ...args], { env: { ...process.env, TOKENPOOL_LOG_JSON: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (!out.includes('\n')) return;
      try {
        const line = JSON.parse(out.split('\n')[0]!) as { url: string; credentials_file: string; data_dir: string };
        resolve({ child, url: line.url, credentialsFile: line.credentials_file, dataDir: line.data_dir, stdout: () => out, stderr: () => err, exited });
      } catch {
        resolve({ child, url: '', credentialsFile: '', dataDir: '', stdout: () => out, stderr: () => err, exited });
      }
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening: ${err}`)));
  });
}

function admin(file: string): { name: string; password: string } {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as { name: string; password: string };
}

test('the server starts, keeps its admin in a 0600 file, refuses anonymous writes, stops cleanly on SIGTERM and restarts with its data', async () => {
  const data = path.join(tmp, 'data');
  const s1 = await startServer(['--port', '0', '--data', data, '--json']);
  assert.match(s1.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s1.dataDir, data);
  assert.equal(s1.credentialsFile, path.join(data, 'admin.json'));
  assert.equal(fs.statSync(s1.credentialsFile).mode & 0o777, 0o600);
  const creds = admin(s1.credentialsFile);
  assert.ok(creds.password.length >= 16);
  assert.equal(s1.stdout().trim().split('\n').length, 1, 'one JSON line on stdout');

  const anon = await rawRequest(s1.url, 'PUT', '/newdb');
  assert.equal(anon.status, 401);
  assert.equal((await rawRequest(s1.url, 'GET', '/')).status, 200, 'the server survives the anonymous request');
  assert.equal((await rawRequest(s1.url, 'PUT', '/pool', { auth: creds })).status, 201);
  const docs = Array.from({ length: 300 }, (_, n) => ({ _id: `tok_${n}`, n }));
  assert.equal((await rawRequest(s1.url, 'POST', '/pool/_bulk_docs', { auth: creds, body: JSON.stringify({ docs }) })).status, 201);
  for (let n = 0; n < 5; n++) {
    assert.equal((await rawRequest(s1.url, 'PUT', `/pool/single_${n}`, { auth: creds, body: JSON.stringify({ n }) })).status, 201);
  }

  // A longpoll in flight when SIGTERM arrives gets its answer; a write sent just before is kept if acknowledged.
  assert.equal((await rawRequest(s1.url, 'PUT', '/quiet', { auth: creds })).status, 201);
  const poll = rawRequest(s1.url, 'GET', '/quiet/_changes?feed=longpoll&since=now&timeout=60000', { auth: creds });
  const late = rawRequest(s1.url, 'POST', '/pool/_bulk_docs', { auth: creds, body: JSON.stringify({ docs: Array.from({ length: 500 }, (_, n) => ({ _id: `late_${n}` })) }) });
  await new Promise((r) => setTimeout(r, 300));
  s1.child.kill('SIGTERM');
  const polled = await poll;
  assert.equal(polled.status, 200);
  assert.deepEqual(polled.json().results, []);
  const lateReply = await late.catch(() => null);
  assert.equal(await s1.exited, 0, s1.stderr());
  assert.ok(!s1.stdout().includes(creds.password) && !s1.stderr().includes(creds.password), 'the password is never printed');

  const s2 = await startServer(['--port', '0', '--data', data, '--json']);
  assert.deepEqual(admin(s2.credentialsFile), creds, 'the same admin after a restart');
  const info = (await rawRequest(s2.url, 'GET', '/pool', { auth: creds })).json();
  const expected = 305 + (lateReply?.status === 201 ? 500 : 0);
  if (lateReply && lateReply.status !== 201) assert.ok(info.doc_count >= 305);
  else assert.equal(info.doc_count, expected);
  assert.equal((await rawRequest(s2.url, 'GET', '/pool/tok_299', { auth: creds })).json().n, 299);
  s2.child.kill('SIGINT');
  assert.equal(await s2.exited, 0, s2.stderr());
});

test("the README's flow in one shell: server starts with TOKENPOOL_DB and TOKENPOOL_CREDENTIALS exported, and welcomes clients as CouchDB does", async () => {
  const s = await startServer(['--port', '0', '--data', path.join(tmp, 'readme-shell'), '--json'], {
    TOKENPOOL_DB: 'http://127.0.0.1:5984/lofar',
    TOKENPOOL_CREDENTIALS: path.join(tmp, 'readme-shell', 'admin.json'),
  });
  assert.match(s.url, /^http:\/\/127\.0\.0\.1:\d+$/, s.stderr());
  const welcome = await rawRequest(s.url, 'GET', '/');
  assert.equal(welcome.status, 200);
  const body = JSON.parse(welcome.body) as { couchdb: string; version: string };
  assert.equal(body.couchdb, 'Welcome');
  assert.match(body.version, /^3\.\d+\.\d+$/);
  s.child.kill('SIGTERM');
  assert.equal(await s.exited, 0);
});

test('human output names the URL and the credentials file, never the password', async () => {
  const data = path.join(tmp, 'human');
  const child = spawn(process.execPath, [...CLI, 'server', '--port', '0', '--data', data, '--in-memory'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('Stop with')) resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.match(out, /listening on http:\/\/127\.0\.0\.1:\d+/);
  assert.ok(out.includes(path.join(data, 'admin.json')), out);
  assert.match(out, /0600/);
  assert.ok(!out.includes(admin(path.join(data, 'admin.json')).password));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('a port in use, a data directory in use, an unwritable data directory and a corrupt admin.json are clear errors', async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const port = (blocker.address() as net.AddressInfo).port;
  try {
    const r = await runCli(['server', '--port', String(port), '--data', path.join(tmp, 'busy-port')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
  } finally {
    blocker.close();
  }

  const shared = path.join(tmp, 'shared');
  const holder = await startServer(['--port', '0', '--data', shared, '--json']);
  const second = await runCli(['server', '--port', '0', '--data', shared]);
  assert.equal(second.code, 2);
  assert.match(second.stderr, /in use by another tokenpool server/);
  holder.child.kill('SIGTERM');
  assert.equal(await holder.exited, 0);

  const aFile = path.join(tmp, 'a-file');
  fs.writeFileSync(aFile, 'x');
  const unwritable = await runCli(['server', '--port', '0', '--data', path.join(aFile, 'sub')]);
  assert.equal(unwritable.code, 2);
  assert.match(unwritable.stderr, /data directory .* cannot be created or written/);

  const corrupt = path.join(tmp, 'corrupt');
  fs.mkdirSync(corrupt);
  fs.writeFileSync(path.join(corrupt, 'admin.json'), '{"name": "admin", "pass', { mode: 0o600 });
  const bad = await runCli(['server', '--port', '0', '--data', corrupt]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /admin\.json is not valid JSON/);
  assert.match(bad.stderr, /move it away/);
});
