/** `tokenpool dashboard --db URL --credentials viewer.json`: serves a remote pool read with a viewer account. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli, CLI } from './helpers/cli.js';
import { seedPool, type Seeded } from './helpers/status-fixture.js';
import type { StatusSummary } from '../server/status/types.js';

let server: TestServer;
let dbUrl: string;
let seeded: Seeded;
let dir: string;

before(async () => {
  server = await startTestServer();
  dbUrl = server.newDbUrl('remote');
  seeded = await seedPool(server.adminPool(dbUrl), { obsids: ['L300001'], steps: ['avg'], perStep: 20 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-remote-'));
});

after(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the remote dashboard answers with the viewer account and never hands it to the browser', async () => {
  const viewerFile = path.join(dir, 'viewer.json');
  const add = await runCli(['db', 'user', 'add', 'scientist', '--role', 'viewer', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--out', viewerFile]);
  assert.equal(add.code, 0, add.stderr);
  const viewerPassword = (JSON.parse(fs.readFileSync(viewerFile, 'utf8')) as { password: string }).password;

  const child = spawn(process.execPath, [CLI, 'dashboard', '--db', dbUrl, '--credentials', viewerFile, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no URL printed: ${err}`)), 60_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /"url": "([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    const root = new URL('/', url).href;
    const redirect = await fetch(root, { redirect: 'manual' });
    assert.equal(redirect.status, 302);
    const page = await (await fetch(url)).text();
    assert.match(page, /<div id="app" data-api=/);
    assert.ok(!page.includes(viewerPassword));

    const res = await fetch(`${url}api/summary`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(!text.includes(viewerPassword));
    const summary = JSON.parse(text) as StatusSummary;
    assert.equal(summary.totals.total, seeded.total);
    assert.deepEqual(summary.rows[0]!.counts, seeded.counts['L300001/avg']);

    assert.equal((await fetch(`${url}api/summary`, { method: 'DELETE' })).status, 405);
    assert.equal((await fetch(new URL('/_tokenpool/dashboard/other-db/api/summary', url))).status, 404);
  } finally {
    child.kill('SIGTERM');
  }
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, err);
});

test('the remote dashboard refuses to start with a wrong password, without printing it', async () => {
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ name: 'scientist', password: 'not-the-password-42' }), { mode: 0o600 });
  const r = await runCli(['dashboard', '--db', dbUrl, '--credentials', bad, '--port', '0']);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /refused/);
  assert.ok(!r.stderr.includes('not-the-password-42'));
});
