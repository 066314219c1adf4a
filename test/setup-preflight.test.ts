/**
 * The suite's preflight (test/setup/preflight.ts), run as vitest runs it before any test: a missing
 * program and a CouchDB that accepts connections but never answers are each one clear message naming
 * them and the command that installs everything, exit 2, instead of failures or a hang later.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ownModule } from '../server/own-module.js';

const PREFLIGHT = ownModule('./setup/preflight', import.meta.url);
let silent: net.Server;
const held: net.Socket[] = [];

beforeAll(async () => {
  // Accepts, reads, never answers: a stuck proxy or load balancer.
  silent = net.createServer((socket) => held.push(socket.on('data', () => undefined)));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
});
afterAll(async () => {
  held.forEach((s) => s.destroy());
  await new Promise((resolve) => silent.close(resolve));
});

function preflight(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const code = `const { default: preflight } = await import(${JSON.stringify(PREFLIGHT.file)}); await preflight();`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...PREFLIGHT.execArgv, '--input-type=module', '-e', code], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (exit) => resolve({ code: exit, stderr }));
  });
}

test('a missing program: named with its Debian package and the command that installs everything, exit 2', async () => {
  const r = await preflight({ CHROMIUM_PATH: '/nonexistent/chromium', COUCHDB_URL: '', COUCHDB_CLUSTER_URLS: '' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /missing: chromium\n  apt-get install chromium\n/);
  assert.match(r.stderr, /npm run test:all/);
});

test('a CouchDB that accepts connections but never answers: named, with its deadline, exit 2', async () => {
  const url = `http://admin:secret-word@127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const r = await preflight({ COUCHDB_URL: url, COUCHDB_CLUSTER_URLS: '' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /http:\/\/127\.0\.0\.1:\d+ does not answer \(no answer in 5 s\)/);
  assert.ok(!r.stderr.includes('secret-word'), 'the password is not shown');
});
