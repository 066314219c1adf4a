/**
 * The embedded server survives every request: anonymous, wrong-password, malformed-credential and
 * authenticated non-admin requests across CouchDB's route families, odd methods, malformed bodies and
 * paths. After each batch the engine must not have been restarted (the guard refused what would crash
 * it) and the server must still answer. Also: a killed engine is restarted and keeps its data.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './helpers/server.js';
import { rawRequest, type Reply } from './helpers/http.js';
import type { Credentials } from '../server/client.js';

let server: EmbeddedTestServer;
const DB = 'fuzzdb';
const member: Credentials = { name: 'member1', password: 'member-pw' };
const outsider: Credentials = { name: 'outsider1', password: 'outsider-pw' };

type Who = 'anonymous' | 'wrong-password' | 'unknown-user' | 'malformed-auth' | 'garbage-cookie' | 'member' | 'outsider' | 'admin';
// The admin goes last and on its own database: its deletes must not change what the others see.
const WHO: Who[] = ['anonymous', 'wrong-password', 'unknown-user', 'malformed-auth', 'garbage-cookie', 'member', 'outsider', 'admin'];
const ADMIN_DB = 'fuzzadmin';

function authHeaders(who: Who): Record<string, string> {
  const basic = (c: Credentials) => 'Basic ' + Buffer.from(`${c.name}:${c.password}`).toString('base64');
  switch (who) {
    case 'anonymous':
      return {};
    case 'wrong-password':
      return { authorization: basic({ name: server.admin.name, password: 'not-the-password' }) };
    case 'unknown-user':
      return { authorization: basic({ name: 'nobody', password: 'x' }) };
    case 'malformed-auth':
      return { authorization: 'Basic %%%not-base64' };
    case 'garbage-cookie':
      return { cookie: 'AuthSession=Z2FyYmFnZQ' };
    case 'member':
      return { authorization: basic(member) };
    case 'outsider':
      return { authorization: basic(outsider) };
    case 'admin':
      return { authorization: basic(server.admin) };
  }
}

const PATHS = [
  '/',
  '/_all_dbs',
  '/_session',
  '/_uuids?count=3',
  '/_users',
  '/_users/_all_docs',
  '/_users/org.couchdb.user:member1',
  '/_users/org.couchdb.user:someone',
  '/_users/_design/_auth',
  '/_config',
  '/_config/admins',
  '/_replicate',
  '/_active_tasks',
  '/_utils',
  '/_replicator',
  '/_replicator/x',
  '/_global_changes',
  `/${DB}`,
  '/newdb-fuzz',
  '/nodb/doc',
  '//_security',
  `/${DB}/_security`,
  `/${DB}/_design/v`,
  `/${DB}/_design/v/_view/all`,
  `/${DB}/_design/v/_view/all?group=true`,
  `/${DB}/_design/v/_view/all?reduce=false&include_docs=true`,
  `/${DB}/_design/v/_view/missing`,
  `/${DB}/_design/v/_show/x`,
  `/${DB}/_design/v/_list/x/all`,
  `/${DB}/_design/v/_update/x`,
  `/${DB}/_design/v/_rewrite/x`,
  `/${DB}/_design/v/_info`,
  `/${DB}/_design_docs`,
  `/${DB}/_find`,
  `/${DB}/_index`,
  `/${DB}/_index/_design/idx/json/by-n`,
  `/${DB}/_explain`,
  `/${DB}/_bulk_docs`,
  `/${DB}/_bulk_get`,
  `/${DB}/_all_docs`,
  `/${DB}/_all_docs?keys=%5B%22d1%22%5D`,
  `/${DB}/_changes`,
  `/${DB}/_changes?feed=longpoll&timeout=200&since=now`,
  `/${DB}/_changes?filter=_view&view=v/all`,
  `/${DB}/_compact`,
  `/${DB}/_view_cleanup`,
  `/${DB}/_revs_diff`,
  `/${DB}/_revs_limit`,
  `/${DB}/_missing_revs`,
  `/${DB}/_purge`,
  `/${DB}/_temp_view`,
  `/${DB}/_ensure_full_commit`,
  `/${DB}/d1`,
  `/${DB}/d1?rev=1-abc`,
  `/${DB}/d1?revs=true&open_revs=all`,
  `/${DB}/d1/att.txt`,
  `/${DB}/d1/att.txt?rev=bad`,
  `/${DB}/fresh-doc`,
  `/${DB}/_local/l1`,
  `/${DB}/_local/fresh`,
  `/${DB}/_design/fresh`,
  '/%',
  '/%zz',
  `/${DB}/%E0%A4%A`,
  `/${DB}/..%2F..%2Fetc`,
  `/${DB}/doc%00null`,
  '/_users%2Forg.couchdb.user:member1',
  `/${DB}/_design%2Fv`,
  `/${DB}?x=%ZZ&y`,
];

const METHODS = ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'COPY', 'PATCH', 'OPTIONS'];
const BODIES: (string | undefined)[] = [
  undefined,
  '{"type":"token","n":1}',
  '{"bad json',
  '[1,2,3]',
  '"a string"',
  '{"docs":[{"_id":"z"},{"_id":"_design/evil","views":{"v":{"map":"function(doc){emit(1,1)}"}}}],"keys":["d1"],"selector":{"n":{"$gt":0}},"index":{"fields":["n"]}}',
  '{"admins":{"names":["outsider1"]},"members":{"names":[],"roles":[]}}',
  '{"_id":"org.couchdb.user:member1","name":"member1","roles":["_admin"],"type":"user","password":"x"}',
];

/** A bounded, deterministic set of combinations: every identity × method × path, bodies and extra headers rotating. */
function* combinations(): Generator<{ who: Who; method: string; path: string; body?: string; headers: Record<string, string> }> {
  let k = 0;
  for (const who of WHO) {
    for (const template of PATHS) {
      const p = who === 'admin' ? template.replace(`/${DB}`, `/${ADMIN_DB}`).replace('newdb-fuzz', 'newdb-admin').replace('member1', 'otheruser') : template;
      for (const method of METHODS) {
        k++;
        const body = method === 'GET' || method === 'HEAD' ? undefined : BODIES[k % BODIES.length];
        const headers: Record<string, string> = { ...authHeaders(who) };
        if (method === 'COPY') headers.destination = ['copied-doc', '../../etc', '_design/copied', '%E0%A4%A'][k % 4]!;
        if (k % 11 === 0) headers['content-type'] = 'text/plain';
        if (k % 13 === 0) headers['x-couch-full-commit'] = 'true';
        if (k % 17 === 0) headers['if-match'] = '"1-garbage"';
        if (k % 19 === 0) headers.accept = 'multipart/mixed';
        yield { who, method, path: p, body, headers };
      }
    }
  }
}

async function healthy(): Promise<void> {
  const root = await rawRequest(server.url, 'GET', '/');
  assert.equal(root.status, 200, 'the server stopped answering GET /');
  const db = await rawRequest(server.url, 'GET', `/${DB}`, { auth: server.admin });
  assert.equal(db.status, 200, `admin GET /${DB} failed: ${db.body}`);
}

/** A database with a view, a document with an attachment and a local document. */
async function seed(db: string): Promise<void> {
  const admin = { auth: server.admin };
  await rawRequest(server.url, 'PUT', `/${db}`, admin);
  await rawRequest(server.url, 'PUT', `/${db}/_design/v`, { ...admin, body: JSON.stringify({ views: { all: { map: 'function (doc) { emit(doc._id, 1); }', reduce: '_count' } } }) });
  const d1 = await rawRequest(server.url, 'PUT', `/${db}/d1`, { ...admin, body: '{"n":1}' });
  await rawRequest(server.url, 'PUT', `/${db}/d1/att.txt?rev=${d1.json().rev}`, { ...admin, body: 'hello', headers: { 'content-type': 'text/plain' } });
  await rawRequest(server.url, 'PUT', `/${db}/_local/l1`, { ...admin, body: '{"x":1}' });
}

beforeAll(async () => {
  server = await startEmbeddedTestServer();
  const admin = { auth: server.admin };
  await seed(DB);
  await seed(ADMIN_DB);
  await rawRequest(server.url, 'PUT', `/${DB}/keep`, { ...admin, body: '{"v":"kept"}' });
  for (const u of [member, outsider]) {
    const r = await rawRequest(server.url, 'PUT', `/_users/org.couchdb.user:${u.name}`, {
      ...admin,
      body: JSON.stringify({ name: u.name, password: u.password, roles: u === member ? ['members'] : [], type: 'user' }),
    });
    assert.equal(r.status, 201, r.body);
  }
  await rawRequest(server.url, 'PUT', `/${DB}/_security`, { ...admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: [], roles: ['members'] } }) });
});

afterAll(async () => {
  await server?.stop();
});

test('no identity, method, path or body combination restarts the engine, and CouchDB status rules hold', async () => {
  const all = [...combinations()];
  const BATCH = 50;
  const log: string[] = [];
  for (let i = 0; i < all.length; i += BATCH) {
    const batch = all.slice(i, i + BATCH);
    await Promise.all(
      batch.map(async (c) => {
        let reply: Reply;
        try {
          reply = await rawRequest(server.url, c.method, c.path, { headers: c.headers, body: c.body, timeoutMs: 60_000 });
        } catch (err) {
          throw new Error(`${c.who} ${c.method} ${c.path}: ${(err as Error).message}`);
        }
        log.push(`${c.who} ${c.method} ${c.path} -> ${reply.status}`);
        assert.ok(reply.status < 500 || reply.status === 501, `${c.who} ${c.method} ${c.path} -> ${reply.status} ${reply.body.slice(0, 200)}`);
        checkStatus(c.who, c.method, c.path, reply);
      }),
    );
    assert.equal(server.embedded.engine.restarts, 0, `the engine was restarted during batch ${i / BATCH}:\n${batch.map((c) => `${c.who} ${c.method} ${c.path}`).join('\n')}`);
    await healthy();
  }
  assert.ok(log.length > 3000, `only ${log.length} requests were sent`);
});

/** CouchDB's answers where they matter for security. */
function checkStatus(who: Who, method: string, p: string, reply: Reply): void {
  const what = `${who} ${method} ${p} -> ${reply.status} ${reply.body.slice(0, 200)}`;
  const openToAll = ['GET /', 'HEAD /', 'GET /_session', 'HEAD /_session', 'POST /_session', 'DELETE /_session', 'GET /_uuids?count=3', 'HEAD /_uuids?count=3'].includes(`${method} ${p}`);
  // An Authorization header that does not decode, or an unknown session cookie, counts as no credentials (as on CouchDB).
  if ((who === 'anonymous' || who === 'malformed-auth' || who === 'garbage-cookie') && !openToAll && reply.status !== 400 && reply.status !== 405) {
    assert.equal(reply.status, 401, what);
  }
  if (who === 'wrong-password' || who === 'unknown-user') {
    if (reply.status !== 400 && reply.status !== 405) assert.equal(reply.status, 401, what);
  }
  if (who === 'member' || who === 'outsider') {
    if (method === 'PUT' && p === '/newdb-fuzz') assert.equal(reply.status, 403, what);
    if (p.startsWith('/_config') || p === '/_replicate' || p === '/_active_tasks') assert.equal(reply.status, 403, what);
  }
  if (who === 'outsider' && p.startsWith(`/${DB}/`) && !p.includes('%') && reply.status !== 400 && reply.status !== 405) {
    assert.equal(reply.status, 403, what);
  }
  if (who === 'member' && method === 'GET' && p === `/${DB}/d1`) assert.equal(reply.status, 200, what);
}

test('the data written by the admin is intact after the fuzzing, and no one became an admin', async () => {
  // Members may change and delete documents; `keep` is one no fuzzed path names.
  const keep = await rawRequest(server.url, 'GET', `/${DB}/keep`, { auth: server.admin });
  assert.equal(keep.status, 200);
  assert.equal(keep.json().v, 'kept');
  const security = (await rawRequest(server.url, 'GET', `/${DB}/_security`, { auth: server.admin })).json();
  assert.deepEqual(security.members.roles, ['members']);
  assert.deepEqual(security.admins?.names ?? [], []);
  const session = (await rawRequest(server.url, 'GET', '/_session', { auth: member })).json();
  assert.ok(!session.userCtx.roles.includes('_admin'), JSON.stringify(session));
  assert.equal((await rawRequest(server.url, 'GET', '/newdb-fuzz', { auth: server.admin })).status, 404);
  // Only database admins may write design documents (the fuzzed bodies try, in _bulk_docs too).
  assert.equal((await rawRequest(server.url, 'GET', `/${DB}/_design/evil`, { auth: server.admin })).status, 404);
  assert.equal((await rawRequest(server.url, 'GET', `/${DB}/_design/fresh`, { auth: server.admin })).status, 404);
  assert.equal((await rawRequest(server.url, 'GET', `/${DB}/_design/copied`, { auth: server.admin })).status, 404);
});

test('huge headers and a huge URL are refused without harming the server', async () => {
  const big = 'x'.repeat(64 * 1024);
  const r1 = await rawRequest(server.url, 'GET', `/${DB}`, { headers: { 'x-big': big } }).catch((err: Error) => err);
  if (!(r1 instanceof Error)) assert.equal(r1.status, 431);
  const r2 = await rawRequest(server.url, 'GET', `/${DB}/${big}`, { auth: server.admin }).catch((err: Error) => err);
  if (!(r2 instanceof Error)) assert.ok(r2.status === 431 || r2.status === 414 || r2.status === 404, String(r2.status));
  assert.equal(server.embedded.engine.restarts, 0);
  await healthy();
});

test('a killed engine is restarted by the supervisor, keeps its LevelDB data and answers again', async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-fuzz-'));
  const disk = await startEmbeddedTestServer({ inMemory: false, dataDir });
  try {
    const admin = { auth: disk.admin };
    assert.equal((await rawRequest(disk.url, 'PUT', '/kept', admin)).status, 201);
    const docs = Array.from({ length: 50 }, (_, n) => ({ _id: `k${n}`, n }));
    assert.equal((await rawRequest(disk.url, 'POST', '/kept/_bulk_docs', { ...admin, body: JSON.stringify({ docs }) })).status, 201);
    const pid = disk.embedded.engine.pid;
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    let info: Reply | null = null;
    for (let attempt = 0; attempt < 120; attempt++) {
      info = await rawRequest(disk.url, 'GET', '/kept', admin).catch(() => null);
      if (info?.status === 200) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(info?.status, 200, 'the server did not answer after the engine was killed');
    assert.equal(info!.json().doc_count, 50);
    assert.equal(disk.embedded.engine.restarts, 1);
    assert.notEqual(disk.embedded.engine.pid, pid);
    assert.equal((await rawRequest(disk.url, 'GET', '/kept/k7', admin)).json().n, 7);
  } finally {
    await disk.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
