/**
 * `tokenpool stage --method stageit` against a stand-in StageIT on loopback (REST + GraphQL as its
 * client uses them) and the pool: batches per observation and site, tokens released to todo with
 * WebDAV URLs as files come online, per-file failures with StageIT's reason, restart without a
 * second request, deadline, StageIT's failure answers. The released tokens are then read from a
 * real nginx WebDAV SE that checks the request's macaroon. Credentials (the API token, the
 * macaroons) never reach a token, a log line, an error, or anything a viewer account can read.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { afterAll, beforeAll, test } from 'vitest';
import { createWorkerNode } from '../agent/node/index.js';
import { PhaseError } from '../agent/phases.js';
import type { Pool } from '../server/client.js';
import { createLogger } from '../server/log.js';
import { initDatabase } from '../server/setup.js';
import { EXIT, newToken, type Token } from '../server/token.js';
import { CLI, runCli } from './helpers/cli.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { attemptParts } from './helpers/phase.js';
import { createTokenIssuer, mintMacaroon } from './helpers/se-auth.js';
import { startStageIt, type StageItStandIn } from './helpers/stageit.js';
import { startTestServer, type TestServer } from './helpers/server.js';

const keys = { macaroonSecret: 'lta-se-root-' + randomBytes(8).toString('hex'), jwks: createTokenIssuer().jwks };
const API_TOKEN = 'stageit-api-token-' + randomBytes(12).toString('hex');
let server: TestServer;
let se: Nginx;
let stageit: StageItStandIn;
let home: string;
let macaroon: string;
let macaroonsFile: string;
let dbUrl: string;
let pool: Pool;

const PNFS = '/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035';
const surl = (obsid: string, sb: number) => `srm://srm.grid.sara.nl:8443${PNFS}/${obsid.slice(1)}/${obsid}_SB${String(sb).padStart(3, '0')}_uv.MS_0123abcd.tar`;

beforeAll(async () => {
  server = await startTestServer();
  se = await startNginx({ auth: keys });
  macaroon = mintMacaroon(keys.macaroonSecret, { caveats: ['activity:DOWNLOAD,LIST', `path:${PNFS}`, `before:${new Date(Date.now() + 86400e3).toISOString()}`] });
  stageit = await startStageIt({ token: API_TOKEN, webdavBase: se.url, macaroons: () => [{ site: 'SURF', content: macaroon, validUntil: new Date(Date.now() + 86400e3).toISOString() }] });
  home = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-stageit-'));
  fs.writeFileSync(path.join(home, '.stagingrc'), `api_token=${API_TOKEN}\n`, { mode: 0o600 });
  macaroonsFile = path.join(home, '.tokenpool', 'macaroons.json');
  dbUrl = server.newDbUrl('stageit');
  pool = server.adminPool(dbUrl);
  await initDatabase(pool, { guard: true });
});

afterAll(async () => {
  await stageit?.close();
  await se?.close();
  await server?.stop();
  fs.rmSync(home, { recursive: true, force: true });
});

async function seed(obsid: string, subbands: number[], perToken: number): Promise<void> {
  for (let i = 0; i < subbands.length; i += perToken) {
    const sbs = subbands.slice(i, i + perToken);
    await pool.db.insert(newToken({ obsid, step: 'cal1', subbands: sbs, site: 'sara', status: 'staging', input: sbs.map((sb) => ({ url: surl(obsid, sb) })) }));
    for (const sb of sbs) {
      // The file as the SE serves it at its WebDAV URL.
      const file = path.join(se.root, new URL(surl(obsid, sb)).pathname);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      const src = fs.mkdtempSync(path.join(home, 'ms-'));
      fs.writeFileSync(path.join(src, `${obsid}_SB${sb}.dat`), randomBytes(64 << 10));
      tar.c({ sync: true, file, cwd: src }, [`${obsid}_SB${sb}.dat`]);
    }
  }
}

const stage = (...args: string[]) =>
  runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--stageit-url', stageit.url, ...args], { env: { HOME: home }, timeoutMs: 120_000 });

async function tokens(obsid: string): Promise<Token[]> {
  const all = await pool.db.list({ include_docs: true });
  return all.rows.map((r) => r.doc as unknown as Token).filter((t) => t?.type === 'token' && t.obsid === obsid);
}

const secretsIn = (text: string) => [API_TOKEN, macaroon].filter((s) => text.includes(s));
const requestsMade = () => stageit.calls.filter((c) => c === 'POST requests/').length;

test('batches per site, release with WebDAV URLs as files come online, failures with StageIT\'s reason; the released tokens read with the macaroon', async () => {
  await seed('L800001', [100, 101, 102, 103, 104, 105], 2);
  // Default method: StageIT, because ~/.stagingrc holds an API token.
  let r = await stage('--json', '--batch-files', '4');
  assert.equal(r.code, 0, r.stderr);
  const first = JSON.parse(r.stdout) as { observations: Array<{ requestId: number; waiting: number }> };
  assert.equal(first.observations.length, 2, 'six files in batches of at most four: two requests');
  assert.equal(requestsMade(), 2);
  const [a, b] = first.observations.map((o) => o.requestId).sort() as [number, number];
  assert.deepEqual(stageit.requests.get(a)!.surls.length, 4);
  for (const t of await tokens('L800001')) assert.equal((t.staging as { method: string }).method, 'stageit');

  // A second round asks again about the same requests, never for them anew.
  r = await stage('--json', '--batch-files', '4');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(requestsMade(), 2);

  stageit.bringOnline(a);
  const [bOnline, bFailed] = stageit.requests.get(b)!.surls as [string, string];
  stageit.bringOnline(b, [bOnline]);
  stageit.fail(b, bFailed, 'SRM_FILE_UNAVAILABLE: file is lost on tape');
  r = await stage();
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /2 token\(s\) moved to todo, 1 marked "not staged", 0 still staging/);
  const byId = new Map((await tokens('L800001')).map((t) => [t._id, t]));
  const released = byId.get('L800001_cal1_SB100-101')!;
  assert.equal(released.status, 'todo');
  assert.deepEqual(
    (released.input as Array<{ url: string; auth?: string }>).map((i) => [i.url, i.auth]),
    [100, 101].map((sb) => [`${se.url}${new URL(surl('L800001', sb)).pathname}`, 'macaroon']),
  );
  const lost = [...byId.values()].find((t) => t.status === 'error')!;
  assert.equal(lost.reason, 'not staged');
  assert.equal(lost.exit_code, EXIT.notStaged);
  assert.match(lost.error.at(-1)!.message, /SRM_FILE_UNAVAILABLE: file is lost on tape/);

  // The macaroon is in the 0600 file for the agents, and nowhere else.
  assert.equal(fs.statSync(macaroonsFile).mode & 0o777, 0o600);
  assert.ok(fs.readFileSync(macaroonsFile, 'utf8').includes(macaroon));
  for (const t of byId.values()) assert.deepEqual(secretsIn(JSON.stringify(t)), []);
  assert.deepEqual(secretsIn(r.stdout + r.stderr), []);

  // An agent reads the released token from the SE with the site's macaroon; without it, it gives the token back.
  const log = createLogger('node', { level: 'silent', pretty: false });
  const scratch = fs.mkdtempSync(path.join(home, 'scratch-'));
  const ctx = { token: released, scratchDir: scratch, inputDir: path.join(scratch, 'in'), outputDir: path.join(scratch, 'out'), env: {}, log, signal: new AbortController().signal, ...attemptParts(released) };
  await createWorkerNode({ macaroons: macaroonsFile, workdir: home }, log).stageIn(ctx);
  assert.equal(fs.readdirSync(ctx.inputDir).length, 2);
  const without = await createWorkerNode({ macaroons: path.join(home, 'none.json'), workdir: home }, log).stageIn({ ...ctx, scratchDir: fs.mkdtempSync(path.join(home, 'scratch-')) }).then(() => null, (e: unknown) => e);
  assert.ok(without instanceof PhaseError);
  assert.equal(without.reason, 'no usable credential');
});

test('a restart takes over a request StageIT already has instead of asking again; the deadline gives up on what is not online', async () => {
  await seed('L800002', [1, 2], 2);
  // A run submitted the request and died before recording it on the token.
  const made = await fetch(new URL('requests/', stageit.url), {
    method: 'POST',
    headers: { Authorization: `Token ${API_TOKEN}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ surls: [surl('L800002', 1), surl('L800002', 2)], notify: false, request_type: 'stage' }),
  });
  const { id } = (await made.json()) as { id: number };
  const before = requestsMade();
  let r = await stage('--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(requestsMade(), before, 'no second request');
  const [t] = await tokens('L800002');
  assert.equal((t!.staging as { request_id: number }).request_id, id);

  r = await stage('--deadline', '0s');
  assert.equal(r.code, 0, r.stderr);
  const [given] = await tokens('L800002');
  assert.equal(given!.status, 'error');
  assert.match(given!.error.at(-1)!.message, /not staged: 2 of 2 files not online \(deadline passed\)/);
});

test('StageIT\'s failure answers: outage, refused token; the token never on the command line, nor in an open file', async () => {
  await seed('L800003', [7], 1);
  stageit.outage(503, 1);
  let r = await stage();
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /StageIT POST (graphql|requests)\/: HTTP 503/);
  assert.equal((await tokens('L800003'))[0]!.status, 'staging', 'nothing changed');

  r = await runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--stageit-url', stageit.url], { env: { HOME: home, TOKENPOOL_STAGEIT_TOKEN: 'wrong-stageit-token-123' } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /StageIT refused the API token from TOKENPOOL_STAGEIT_TOKEN \(HTTP 401\)/);
  assert.ok(!(r.stdout + r.stderr).includes('wrong-stageit-token-123'));

  r = await stage('--stageit-token', 'on-the-command-line-456');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /must not be given on the command line/);
  assert.ok(!r.stderr.includes('on-the-command-line-456'));

  const open = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-stageit-open-'));
  fs.writeFileSync(path.join(open, '.stagingrc'), `api_token=${API_TOKEN}\n`, { mode: 0o644 });
  r = await runCli(['stage', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--stageit-url', stageit.url], { env: { HOME: open } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /readable by others/);
  fs.writeFileSync(path.join(open, '.stagingrc'), 'user=olduser\npassword=oldpassword\n');
  fs.chmodSync(path.join(open, '.stagingrc'), 0o600);
  r = await runCli(['stage', '--method', 'stageit', '--db', dbUrl, '--credentials', server.adminCredentialsFile()], { env: { HOME: open } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /needs a StageIT API token/);
  fs.rmSync(open, { recursive: true, force: true });
  assert.deepEqual(secretsIn(r.stdout + r.stderr), []);
});

test('a viewer account reads no credential by any route: documents, views, _changes, _all_docs, _find, attachments, the dashboard', async () => {
  const viewerFile = path.join(home, 'viewer.json');
  const add = await runCli(['db', 'user', 'add', 'scientist', '--role', 'viewer', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), '--out', viewerFile]);
  assert.equal(add.code, 0, add.stderr);
  const viewer = JSON.parse(fs.readFileSync(viewerFile, 'utf8')) as { name: string; password: string };
  const auth = { Authorization: 'Basic ' + Buffer.from(`${viewer.name}:${viewer.password}`).toString('base64') };
  const get = async (p: string) => {
    const res = await fetch(`${dbUrl}/${p}`, { headers: auth });
    return { status: res.status, text: await res.text() };
  };
  const seen: string[] = [];
  for (const p of ['_all_docs?include_docs=true', '_changes?include_docs=true&style=all_docs&attachments=true']) {
    const r = await get(p);
    assert.equal(r.status, 200, `${p}: ${r.text}`);
    seen.push(r.text);
  }
  const find = await fetch(`${dbUrl}/_find`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ selector: {}, limit: 10000 }) });
  seen.push(await find.text());
  const all = JSON.parse(seen[0]!) as { rows: Array<{ id: string; doc: { _attachments?: Record<string, unknown>; views?: Record<string, unknown> } }> };
  for (const row of all.rows) {
    for (const name of Object.keys(row.doc._attachments ?? {})) seen.push((await get(`${encodeURIComponent(row.id)}/${encodeURIComponent(name)}`)).text);
    if (row.id.startsWith('_design/')) for (const view of Object.keys(row.doc.views ?? {})) seen.push((await get(`${row.id}/_view/${view}?include_docs=true&reduce=false`)).text);
  }
  assert.ok(all.rows.some((r) => r.id.startsWith('L800001')), 'the viewer does read the tokens');

  const child = spawn(process.execPath, [...CLI, 'dashboard', '--db', dbUrl, '--credentials', viewerFile, '--port', '0', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the dashboard printed no URL')), 60_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /"url": "([^"]+)"/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    for (const p of ['', 'api/summary', 'api/tokens?status=todo', 'api/tokens?status=error', 'api/tokens?status=staging', 'api/token/L800001_cal1_SB100-101', 'api/pilots']) {
      const res = await fetch(`${url}${p}`);
      assert.equal(res.status, 200, p);
      seen.push(await res.text());
    }
  } finally {
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await gone;
  }
  assert.ok(seen.join('').includes('L800001_cal1_SB100-101'));
  assert.deepEqual(secretsIn(seen.join('\n')), []);
});
