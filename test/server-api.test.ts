/** The embedded server through nano and raw HTTP: what a CouchDB client relies on works through the guarding front. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import http from 'node:http';
import nano from 'nano';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './helpers/server.js';
import { rawRequest } from './helpers/http.js';
import { basicAuth } from '../server/client.js';

let server: EmbeddedTestServer;
let admin: { name: string; password: string };

beforeAll(async () => {
  server = await startEmbeddedTestServer();
  admin = server.admin;
});

afterAll(async () => {
  await server?.stop();
});

function adminNano() {
  return nano({ url: server.url, headers: { Authorization: basicAuth(admin) } });
}

test('databases, documents, bulk writes, views, _find and attachments work through nano', async () => {
  const couch = adminNano();
  await couch.db.create('basics');
  const db = couch.use<{ kind: string; n: number }>('basics');
  const one = await db.insert({ kind: 'a', n: 1 }, 'one');
  assert.equal(one.ok, true);
  assert.equal((await db.get('one')).n, 1);
  const bulk = await db.bulk({ docs: [1, 2, 3, 4, 5].map((n) => ({ _id: `b${n}`, kind: n % 2 ? 'odd' : 'even', n })) });
  assert.equal(bulk.filter((r) => !r.error).length, 5);
  await db.insert({ _id: '_design/t', views: { byKind: { map: 'function (doc) { emit(doc.kind, doc.n); }', reduce: '_sum' } } } as never);
  const grouped = await db.view('t', 'byKind', { group: true });
  assert.deepEqual(grouped.rows, [
    { key: 'a', value: 1 },
    { key: 'even', value: 6 },
    { key: 'odd', value: 9 },
  ]);
  const listed = await db.view('t', 'byKind', { reduce: false, key: 'odd' });
  assert.deepEqual(listed.rows.map((r) => r.id), ['b1', 'b3', 'b5']);
  await db.createIndex({ index: { fields: ['n'] }, name: 'by-n' });
  const found = await db.find({ selector: { n: { $gt: 3 } }, fields: ['_id'] });
  assert.deepEqual(found.docs.map((d) => d._id).sort(), ['b4', 'b5']);
  const rev = (await db.get('one'))._rev;
  await db.attachment.insert('one', 'log.txt', Buffer.from('hello\n'), 'text/plain', { rev });
  assert.equal((await db.attachment.get('one', 'log.txt')).toString(), 'hello\n');
  const info = await db.info();
  assert.equal(info.doc_count, 8, "6 documents, the view design doc and the _find index design doc");
});

test('_security members and _users: a user created by the admin logs in with basic auth and reads only member databases', async () => {
  const couch = adminNano();
  await couch.db.create('members');
  await couch.db.create('private');
  const users = couch.use('_users');
  await users.insert({ _id: 'org.couchdb.user:alice', name: 'alice', password: 'alice-pw-1', roles: ['lofar'], type: 'user' } as never);
  await couch.request({ db: 'members', method: 'PUT', path: '_security', body: { admins: { names: [], roles: [] }, members: { names: [], roles: ['lofar'] } } });
  await couch.request({ db: 'private', method: 'PUT', path: '_security', body: { admins: { names: [], roles: [] }, members: { names: ['bob'], roles: [] } } });
  const security = await couch.request({ db: 'members', path: '_security' });
  assert.deepEqual(security.members.roles, ['lofar']);
  await couch.use('members').insert({ _id: 'x', v: 1 } as never);

  const alice = { name: 'alice', password: 'alice-pw-1' };
  const session = await rawRequest(server.url, 'GET', '/_session', { auth: alice });
  assert.equal(session.status, 200);
  assert.equal(session.json().userCtx.name, 'alice');
  assert.deepEqual(session.json().userCtx.roles, ['lofar']);
  assert.equal((await rawRequest(server.url, 'GET', '/members/x', { auth: alice })).status, 200);
  assert.equal((await rawRequest(server.url, 'PUT', '/members/y', { auth: alice, body: '{"v":2}' })).status, 201);
  assert.equal((await rawRequest(server.url, 'GET', '/private', { auth: alice })).status, 403, 'a non-member is refused with 403, as CouchDB does');
  assert.equal((await rawRequest(server.url, 'PUT', '/alicedb', { auth: alice })).status, 403, 'only admins create databases');
  assert.equal((await rawRequest(server.url, 'GET', '/members/x', { auth: { name: 'alice', password: 'wrong' } })).status, 401);
  assert.equal((await rawRequest(server.url, 'GET', '/members/x')).status, 401);
});

test('a document PUT without a JSON content type keeps its fields (CouchDB reads the body as JSON)', async () => {
  await rawRequest(server.url, 'PUT', '/plain', { auth: admin });
  const put = await rawRequest(server.url, 'PUT', '/plain/d', { auth: admin, body: '{"a":1}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  assert.equal(put.status, 201, put.body);
  assert.equal((await rawRequest(server.url, 'GET', '/plain/d', { auth: admin })).json().a, 1);
});

/** Opens a continuous feed and hands back its lines as they arrive. */
function openFeed(path: string): { lines: string[]; ended: Promise<void>; waitFor(pred: (l: string) => boolean): Promise<string>; close(): void } {
  const u = new URL(server.url);
  const lines: string[] = [];
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  let req!: http.ClientRequest;
  const ended = new Promise<void>((resolve, reject) => {
    req = http.get({ host: u.hostname, port: u.port, path, headers: { authorization: basicAuth(admin) } }, (res) => {
      assert.equal(res.statusCode, 200);
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          lines.push(line);
          for (const w of waiters.filter((x) => x.pred(line))) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      });
      res.on('end', () => resolve());
    });
    req.on('error', reject);
  });
  return {
    lines,
    ended,
    waitFor: (pred) => {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ pred, resolve }));
    },
    close: () => req.destroy(),
  };
}

test('continuous _changes streams the backlog, then each new change, and ends with last_seq after `timeout` quiet ms', async () => {
  await rawRequest(server.url, 'PUT', '/feed', { auth: admin });
  await rawRequest(server.url, 'PUT', '/feed/before', { auth: admin, body: '{}' });
  const feed = openFeed('/feed/_changes?feed=continuous&timeout=3000&include_docs=true');
  await feed.waitFor((l) => l.includes('"before"'));
  await rawRequest(server.url, 'PUT', '/feed/after', { auth: admin, body: '{"x":42}' });
  const line = JSON.parse(await feed.waitFor((l) => l.includes('"after"')));
  assert.equal(line.doc.x, 42);
  await feed.ended;
  const last = JSON.parse(feed.lines[feed.lines.length - 1]!);
  assert.equal(last.last_seq, line.seq);
});

test('continuous _changes with a heartbeat stays open past the timeout and sends newlines', async () => {
  const feed = openFeed('/feed/_changes?feed=continuous&since=now&heartbeat=200&timeout=300');
  await new Promise((r) => setTimeout(r, 1200));
  await rawRequest(server.url, 'PUT', '/feed/late', { auth: admin, body: '{}' });
  await feed.waitFor((l) => l.includes('"late"'));
  feed.close();
});

test('longpoll _changes answers at the next change, answers empty at timeout, and serves nano changesReader (POST)', async () => {
  await rawRequest(server.url, 'PUT', '/poll', { auth: admin });
  const info = (await rawRequest(server.url, 'GET', '/poll', { auth: admin })).json();
  const empty = await rawRequest(server.url, 'GET', `/poll/_changes?feed=longpoll&since=${info.update_seq}&timeout=500`, { auth: admin });
  assert.equal(empty.status, 200);
  assert.deepEqual(empty.json().results, []);
  const waiting = rawRequest(server.url, 'GET', '/poll/_changes?feed=longpoll&since=now&timeout=30000', { auth: admin });
  await new Promise((r) => setTimeout(r, 500));
  await rawRequest(server.url, 'PUT', '/poll/p1', { auth: admin, body: '{}' });
  const got = (await waiting).json();
  assert.deepEqual(got.results.map((r: { id: string }) => r.id), ['p1']);
  assert.equal(got.last_seq, got.results[0].seq);

  const couch = adminNano();
  const reader = couch.use('poll').changesReader;
  const seen = new Promise<string[]>((resolve) => {
    reader
      .start({ since: 'now', timeout: 2000 })
      .on('batch', (batch: { id: string }[]) => {
        if (batch.length) resolve(batch.map((c) => c.id));
      })
      // stop() aborts the request in flight, which the reader reports as an error.
      .on('error', () => undefined);
  });
  await new Promise((r) => setTimeout(r, 500));
  await rawRequest(server.url, 'PUT', '/poll/p2', { auth: admin, body: '{}' });
  assert.deepEqual(await seen, ['p2']);
  reader.stop();
});

test('a non-member gets 403 on a changes feed, and the feed requires credentials', async () => {
  const anon = await rawRequest(server.url, 'GET', '/poll/_changes?feed=longpoll&timeout=100');
  assert.equal(anon.status, 401);
});
