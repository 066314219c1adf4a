/**
 * Pool setup against a real embedded server: `db init` idempotence, PiCaS Monitor views, roles
 * enforced by _security and the validate function, `db user add`, and secrets kept out of output.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import { openPool, type Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import type { SecurityObject } from '../server/security.js';
import { newToken, nowSeconds, type Token } from '../server/token.js';

let server: TestServer;
let tmp: string;
let adminEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = await startTestServer();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-db-test-'));
  adminEnv = { TOKENPOOL_CREDENTIALS: server.adminCredentialsFile() };
});

afterAll(async () => {
  await server?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function designRevs(pool: Pool): Promise<Record<string, string>> {
  const res = await pool.db.list({ startkey: '_design/', endkey: '_design0' });
  return Object.fromEntries(res.rows.map((r) => [r.id, r.value.rev]));
}

/** A loopback port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function docCount(pool: Pool): Promise<number> {
  return (await pool.db.info()).doc_count;
}

/** A token in a given PiCaS state, as an agent would leave it. */
function tokenIn(sb: number, fields: Partial<Token>): Token {
  return { ...newToken({ obsid: 'L229507', step: 'cal1', subbands: [sb] }), ...fields };
}

test('db init creates the database, design documents and _security; a second run changes nothing', async () => {
  const dbUrl = server.newDbUrl('init');
  const first = await runCli(['db', 'init', '--guard', '--db', dbUrl, '--json'], { env: adminEnv });
  assert.equal(first.code, 0, first.stderr);
  const report = JSON.parse(first.stdout);
  assert.equal(report.database, 'created');
  assert.deepEqual(
    report.designDocs.map((d: { id: string; action: string }) => [d.id, d.action]),
    [
      ['_design/Monitor', 'created'],
      ['_design/tokenpool', 'created'],
      ['_design/tokenpool_validate', 'created'],
    ],
  );
  assert.equal(report.security, 'set');
  assert.equal(report.guard, true);
  const pool = server.adminPool(dbUrl);
  const revs = await designRevs(pool);
  const security = await pool.db.get('_security');
  // Apache CouchDB gives a new database {admins, members}.roles ["_admin"] (admin_only): kept, ours added.
  const notCouchDefault = (roles: string[]) => roles.filter((r) => r !== '_admin');
  assert.deepEqual(notCouchDefault((security as unknown as { admins: { roles: string[] } }).admins.roles), ['tokenpool_manager']);
  assert.deepEqual(notCouchDefault((security as unknown as { members: { roles: string[] } }).members.roles), ['tokenpool_manager', 'tokenpool_agent', 'tokenpool_viewer']);

  const second = await runCli(['db', 'init', '--db', dbUrl, '--json'], { env: adminEnv });
  assert.equal(second.code, 0, second.stderr);
  const again = JSON.parse(second.stdout);
  assert.equal(again.database, 'existed');
  assert.ok(again.designDocs.every((d: { action: string }) => d.action === 'unchanged'), second.stdout);
  assert.equal(again.security, 'unchanged');
  assert.equal(again.guard, true, 'a re-run without --guard keeps the guard');
  assert.deepEqual(await designRevs(pool), revs, 'no design document was rewritten');
});

test('the guard is opt-in: a new pool has none, --no-guard removes it, and an unguarded pool takes what the guard refuses', async () => {
  const dbUrl = server.newDbUrl('guard');
  const plain = await runCli(['db', 'init', '--db', dbUrl, '--json'], { env: adminEnv });
  assert.equal(plain.code, 0, plain.stderr);
  const report = JSON.parse(plain.stdout);
  assert.equal(report.guard, false);
  assert.deepEqual(report.designDocs.map((d: { id: string }) => d.id), ['_design/Monitor', '_design/tokenpool']);
  const pool = server.adminPool(dbUrl);
  await pool.db.insert({ ...tokenIn(1, {}), lock: 'now' } as never);

  const on = JSON.parse((await runCli(['db', 'init', '--guard', '--db', dbUrl, '--json'], { env: adminEnv })).stdout);
  assert.equal(on.guard, true);
  await assert.rejects(pool.db.insert({ ...tokenIn(2, {}), lock: 'now' } as never), (e: { statusCode: number; reason: string }) => e.statusCode === 403 && /lock must be/.test(e.reason));

  const off = await runCli(['db', 'init', '--no-guard', '--db', dbUrl], { env: adminEnv });
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stdout, /guard off/);
  assert.deepEqual(Object.keys(await designRevs(pool)).sort(), ['_design/Monitor', '_design/tokenpool']);
  await pool.db.insert({ ...tokenIn(3, {}), lock: 'now' } as never);
});

test('db init rewrites only a design document whose definition changed, and keeps extra _security grants', async () => {
  const dbUrl = server.newDbUrl('init');
  const pool = server.adminPool(dbUrl);
  await initDatabase(pool);
  const monitor = (await pool.db.get('_design/Monitor')) as unknown as { views: Record<string, unknown> };
  // One of ours changed by hand, and one of the user's own added (as picasclient's add_view() does).
  const mine = { map: "function (doc) { if (doc.type === 'token' && doc.lock > 0) emit(doc._id, doc.hostname); }" };
  await pool.db.insert({ ...monitor, views: { ...monitor.views, todo: { map: 'function (doc) { emit(doc._id, 1); }' }, by_host: mine } } as never);
  await pool.server.request({ db: pool.dbName, path: '_security', method: 'PUT', body: { admins: { names: ['alice'], roles: ['tokenpool_manager'] }, members: { names: [], roles: ['tokenpool_viewer'] } } });
  const revs = await designRevs(pool);
  const report = await initDatabase(pool);
  assert.deepEqual(
    report.designDocs.map((d) => d.action),
    ['updated', 'unchanged'],
  );
  const after = await designRevs(pool);
  assert.notEqual(after['_design/Monitor'], revs['_design/Monitor']);
  const views = ((await pool.db.get('_design/Monitor')) as unknown as { views: Record<string, { map: string }> }).views;
  assert.deepEqual(views.by_host, mine, "the user's own view is kept");
  assert.match(views.todo!.map, /doc.lock == 0 && doc.done == 0/, 'ours is written back');
  assert.equal((await initDatabase(pool)).designDocs[0]!.action, 'unchanged', 'an extra view is no reason to rewrite');
  assert.equal(after['_design/tokenpool'], revs['_design/tokenpool']);
  const security = (await pool.db.get('_security')) as unknown as { admins: { names: string[] }; members: { roles: string[] } };
  assert.deepEqual(security.admins.names, ['alice']);
  assert.deepEqual(new Set(security.members.roles), new Set(['tokenpool_manager', 'tokenpool_agent', 'tokenpool_viewer']));
});

test('PiCaS Monitor views sort a mixed set of tokens into todo, locked, done and error', async () => {
  const pool = server.adminPool(server.newDbUrl('monitor'));
  await initDatabase(pool);
  const t = nowSeconds();
  const docs = [
    tokenIn(1, {}),
    tokenIn(2, {}),
    tokenIn(3, { status: 'running', lock: t - 100 }),
    tokenIn(4, { status: 'locked', lock: t - 50, exit_code: 1 }),
    tokenIn(5, { status: 'done', lock: t - 100, done: t, exit_code: 0 }),
    tokenIn(6, { status: 'error', lock: t - 100, done: t, exit_code: 1 }),
    tokenIn(7, { status: 'error', lock: t - 100, done: t, exit_code: 137 }),
    tokenIn(8, { status: 'error', lock: t - 100, done: t, exit_code: -1 }),
    tokenIn(9, { status: 'error', lock: t - 100, done: t, exit_code: null }),
  ];
  const written = await pool.db.bulk({ docs });
  assert.ok(written.every((r) => !r.error), JSON.stringify(written));
  // A non-token document must not be counted.
  await pool.db.insert({ _id: 'note', type: 'submission' } as never);
  const ids = async (view: string) => (await pool.db.view('Monitor', view)).rows.map((r) => r.key).sort();
  assert.deepEqual(await ids('todo'), ['L229507_cal1_SB001', 'L229507_cal1_SB002']);
  assert.deepEqual(await ids('locked'), ['L229507_cal1_SB003', 'L229507_cal1_SB004']);
  assert.deepEqual(await ids('done'), ['L229507_cal1_SB005']);
  assert.deepEqual(await ids('error'), ['L229507_cal1_SB006', 'L229507_cal1_SB007', 'L229507_cal1_SB008', 'L229507_cal1_SB009']);
  const row = (await pool.db.view('Monitor', 'todo')).rows[0]!;
  assert.equal(row.value, row.key, 'state views emit (_id, _id) as PiCaS does');
  const overview = await pool.db.view('Monitor', 'overview_total', { group: true });
  assert.deepEqual(Object.fromEntries(overview.rows.map((r) => [r.key, r.value])), { done: 1, error: 4, locked: 2, todo: 2 });
  const total = await pool.db.view('Monitor', 'overview_total');
  assert.equal(total.rows[0]!.value, 9);
});

test('roles: an agent cannot change a design document or delete a token, a viewer cannot write, malformed tokens are refused', async () => {
  const dbUrl = server.newDbUrl('roles');
  const admin = server.adminPool(dbUrl);
  await initDatabase(admin, { guard: true });
  await admin.db.insert(tokenIn(1, {}));
  for (const [name, role] of [['agent1', 'agent'], ['viewer1', 'viewer'], ['manager1', 'manager']]) {
    const out = path.join(tmp, `${name}.json`);
    const r = await runCli(['db', 'user', 'add', name!, '--role', role!, '--out', out, '--db', dbUrl], { env: adminEnv });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(fs.statSync(out).mode & 0o777, 0o600);
    const creds = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(creds.url, dbUrl);
    assert.equal(creds.name, name);
    assert.ok(!r.stdout.includes(creds.password) && !r.stderr.includes(creds.password), 'the generated password is never printed');
  }
  const as = (name: string) => openPool({ credentials: path.join(tmp, `${name}.json`) });
  const agent = as('agent1');
  const viewer = as('viewer1');
  const manager = as('manager1');

  // agent: reads and updates tokens, but no design documents and no deletions
  const token = await agent.db.get('L229507_cal1_SB001');
  const claimed = await agent.db.insert({ ...token, status: 'locked', lock: nowSeconds() });
  assert.ok(claimed.ok);
  const ddoc = await agent.db.get('_design/Monitor');
  await assert.rejects(agent.db.insert({ ...ddoc, views: {} } as never), (e: { statusCode: number }) => e.statusCode === 403);
  await assert.rejects(agent.db.insert({ _id: '_design/evil', views: { x: { map: 'function (doc) { emit(1, 1); }' } } } as never), (e: { statusCode: number }) => e.statusCode === 403);
  await assert.rejects(agent.db.destroy('L229507_cal1_SB001', claimed.rev), (e: { statusCode: number; reason: string }) => e.statusCode === 403 && /tokenpool_manager/.test(e.reason));
  assert.equal((await admin.db.get('_design/Monitor'))._rev, ddoc._rev);

  // viewer: reads only
  assert.equal((await viewer.db.get('L229507_cal1_SB001'))._id, 'L229507_cal1_SB001');
  await assert.rejects(viewer.db.insert(tokenIn(2, {})), (e: { statusCode: number; reason: string }) => e.statusCode === 403 && /lacks the role/.test(e.reason));
  const current = await viewer.db.get('L229507_cal1_SB001');
  await assert.rejects(viewer.db.insert({ ...current, priority: 9 }), (e: { statusCode: number }) => e.statusCode === 403);

  // malformed tokens: refused for everyone, naming the field
  await assert.rejects(agent.db.insert({ ...tokenIn(3, {}), lock: 'now' } as never), (e: { reason: string }) => /invalid token L229507_cal1_SB003: lock /.test(e.reason));
  await assert.rejects(admin.db.insert({ ...tokenIn(3, {}), status: 'finished' } as never), (e: { reason: string }) => /status must be one of/.test(e.reason));
  const { obsid: _dropped, ...noObsid } = tokenIn(3, {});
  await assert.rejects(admin.db.insert(noObsid as never), (e: { reason: string }) => /obsid must look like L229507/.test(e.reason));

  // manager: design documents and deletions
  const latest = await manager.db.get('L229507_cal1_SB001');
  assert.ok((await manager.db.destroy(latest._id, latest._rev!)).ok);
  const mddoc = await manager.db.get('_design/Monitor');
  assert.ok((await manager.db.insert({ ...mddoc, views: { ...(mddoc.views as object) } } as never)).ok);
  // A manager (database admin, not server admin) may re-run init on an existing pool.
  const reinit = await runCli(['db', 'init', '--db', dbUrl, '--credentials', path.join(tmp, 'manager1.json'), '--json']);
  assert.equal(reinit.code, 0, reinit.stderr);
  assert.ok(JSON.parse(reinit.stdout).designDocs.every((d: { action: string }) => d.action === 'unchanged'));
});

test('guard: an account listed by name in _security (as PiCaS pools do) writes as an agent', async () => {
  const dbUrl = server.newDbUrl('named');
  const admin = server.adminPool(dbUrl);
  await initDatabase(admin, { guard: true });
  const password = 'picas-pw-' + Math.random().toString(36).slice(2);
  const user = `picas-${Math.random().toString(36).slice(2, 8)}`;
  await admin.server.request({ db: '_users', method: 'PUT', path: `org.couchdb.user:${user}`, body: { _id: `org.couchdb.user:${user}`, name: user, password, roles: [], type: 'user' } });
  const picas = openPool({ db: dbUrl, user, password });
  const security = (await admin.db.get('_security')) as unknown as SecurityObject;
  await admin.server.request({ db: admin.dbName, path: '_security', method: 'PUT', body: { ...security, members: { ...security.members, names: [user] } } });
  const written = await waitForAccess(() => picas.db.insert(tokenIn(1, {})));
  assert.ok(written.ok);
});

/** Retries while a new account or _security change has not reached every node of a cluster yet (401/403). */
async function waitForAccess<T>(write: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await write();
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if ((status !== 401 && status !== 403) || i >= 50) throw err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('CLI errors: unreachable server, wrong credentials, missing role; nothing written and no password shown', async () => {
  const dbUrl = server.newDbUrl('errors');
  const admin = server.adminPool(dbUrl);
  await initDatabase(admin, { guard: true });
  const viewerFile = path.join(tmp, 'viewer-errors.json');
  const pwFile = path.join(tmp, 'pw.txt');
  fs.writeFileSync(pwFile, 'viewer-secret-pw-4711\n', { mode: 0o600 });
  const add = await runCli(['db', 'user', 'add', 'viewer2', '--role', 'viewer', '--password-file', pwFile, '--out', viewerFile, '--db', dbUrl], { env: adminEnv });
  assert.equal(add.code, 0, add.stderr);
  const fixture = new URL('./fixtures/surls/sara-L229507.txt', import.meta.url).pathname;

  const closedPort = await freePort();
  const unreachable = await runCli(['tokens', 'list', '--db', `http://127.0.0.1:${closedPort}/pool`, '--credentials', viewerFile]);
  assert.equal(unreachable.code, 3);
  assert.ok(unreachable.stderr.includes(`cannot reach http://127.0.0.1:${closedPort}/pool: is the server running?`), unreachable.stderr);

  const wrong = await runCli(['tokens', 'list', '--db', dbUrl], { env: { TOKENPOOL_USER: 'viewer2', TOKENPOOL_PASSWORD: 'not-the-password' } });
  assert.equal(wrong.code, 5);
  assert.match(wrong.stderr, /wrong credentials/);
  assert.ok(!wrong.stderr.includes('not-the-password'));

  const denied = await runCli(['tokens', 'add', '--surls', fixture, '--step', 'cal1', '--db', dbUrl, '--credentials', viewerFile]);
  assert.equal(denied.code, 5, denied.stderr);
  assert.match(denied.stderr, /your account lacks the role tokenpool_agent/);
  assert.equal(await docCount(admin), 3, 'only the design documents');

  const initAsViewer = await runCli(['db', 'init', '--db', server.newDbUrl('viewer'), '--credentials', viewerFile]);
  assert.equal(initAsViewer.code, 5);
  assert.match(initAsViewer.stderr, /lacks the role server admin needed to create the database/);

  for (const r of [add, unreachable, wrong, denied, initAsViewer]) {
    for (const secret of ['viewer-secret-pw-4711', server.admin.password]) {
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), `a password leaked: ${r.stdout}${r.stderr}`);
    }
  }
});

test('db user add refuses to generate a password it could not hand over, and lists users', async () => {
  const dbUrl = server.newDbUrl('users');
  await initDatabase(server.adminPool(dbUrl));
  const r = await runCli(['db', 'user', 'add', 'pilot', '--role', 'agent', '--db', dbUrl], { env: adminEnv });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--out FILE/);
  const out = path.join(tmp, 'pilot.json');
  assert.equal((await runCli(['db', 'user', 'add', 'pilot', '--role', 'agent', '--out', out, '--db', dbUrl], { env: adminEnv })).code, 0);
  const again = await runCli(['db', 'user', 'add', 'pilot', '--role', 'agent', '--out', out, '--db', dbUrl], { env: adminEnv });
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists.*\n.*--force/);
  const list = await runCli(['db', 'user', 'list', '--json', '--db', dbUrl], { env: adminEnv });
  assert.equal(list.code, 0, list.stderr);
  assert.ok(JSON.parse(list.stdout).some((u: { name: string; roles: string[] }) => u.name === 'pilot' && u.roles.includes('tokenpool_agent')));
});
