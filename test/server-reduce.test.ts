/**
 * Stored reductions: the front's answers to reduced view queries must equal the engine's own answers
 * (queried directly, bypassing the front) on mixed data, through updates, deletes and design changes.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import type { EmbeddedTestServer } from './helpers/server.js';
import { rawRequest } from './helpers/http.js';
import { frontAndEngine, type FrontAndEngine } from './helpers/front-and-engine.js';
import { STORED_REDUCE_HEADER } from '../server/embedded/front.js';

let server: EmbeddedTestServer;
const DB = 'reduce';

const VIEWS = {
  progress: { map: "function (doc) { if (doc.type === 'token') emit([doc.obsid, doc.step, doc.status], 1); }", reduce: '_count' },
  overview_total: { map: "function (doc) { if (doc.type === 'token') emit(doc.state, 1); }", reduce: '_sum' },
  vector: { map: "function (doc) { if (doc.type === 'token') emit(doc.status, [1, doc.n, doc.n % 3]); }", reduce: '_sum' },
  mixed: {
    map: `function (doc) {
  var keys = [null, false, true, -1, 0, 2.5, 10, '', 'A', 'a', 'b', 'é', [], ['a'], ['a', 1], ['a', null], {}, {a: 1}, {a: 2, b: 1}];
  if (doc.type === 'token') { emit(keys[doc.n % keys.length], doc.n); emit(keys[(doc.n * 7) % keys.length], 1); }
}`,
    reduce: '_sum',
  },
  partial: {
    map: "function (doc) { if (doc.type === 'token') { emit(doc.step, 1); if (doc.n % 5 === 0) throw new Error('boom'); emit('after', 1); } }",
    reduce: '_count',
  },
  custom: { map: "function (doc) { if (doc.type === 'token') emit(doc.status, doc.n); }", reduce: 'function (keys, values) { return values.length; }' },
};

const STATUSES = ['queued', 'running', 'done', 'error'];
const STEPS = ['avg', 'cal', 'img'];

function token(n: number, variant = 0) {
  const status = STATUSES[(n + variant) % STATUSES.length]!;
  return {
    _id: `t_${String(n).padStart(5, '0')}`,
    type: 'token',
    obsid: `L${100000 + (n % 4)}`,
    step: STEPS[(n + variant) % STEPS.length]!,
    status,
    state: status === 'done' ? 'done' : status === 'error' ? 'error' : status === 'running' ? 'locked' : 'todo',
    n: n + variant,
  };
}

const QUERIES = [
  '',
  'group=true',
  'group_level=0',
  'group_level=1',
  'group_level=2',
  'group_level=3',
  'reduce=true&group=true&limit=3',
  'group=true&skip=2&limit=2',
  'group=true&descending=true',
  'group_level=2&descending=true&limit=4',
  'key=%5B%22L100001%22%2C%22cal%22%2C%22done%22%5D&group=true',
  'key=%22done%22',
  'key=%22running%22&group=true',
  'startkey=%5B%22L100001%22%5D&endkey=%5B%22L100002%22%2C%7B%7D%5D&group_level=2',
  'startkey=%5B%22L100001%22%5D&endkey=%5B%22L100002%22%5D&group_level=3&inclusive_end=false',
  'start_key=%22b%22&end_key=%22x%22&group=true',
  'startkey=%22q%22&group=true',
  'endkey=%22q%22&group=true&inclusive_end=false',
  'startkey=%22s%22&endkey=%22d%22&descending=true&group=true',
  'startkey=%22running%22&endkey=%22done%22&descending=true&group=true&inclusive_end=false',
  'startkey=2&endkey=%22b%22&group=true',
  'startkey=%5B%22a%22%5D&endkey=%7B%7D&group=true',
  'startkey=null&endkey=true&group=true',
  'key=%7B%22a%22%3A1%7D&group=true',
  'group_level=1&startkey=%5B%5D&endkey=%5B%22a%22%2C%7B%7D%5D',
];

let fe: FrontAndEngine;
const viaFront = (view: string, query: string) => fe.viaFront(view, query);
const viaEngine = (view: string, query: string) => fe.viaEngine(view, query);
const bulk = (docs: object[]) => fe.bulk(docs);

/** Every query on every view: same status and body as the engine, answered from the stored index. */
function compareAll(label: string): Promise<void> {
  const queries = ['progress', 'overview_total', 'vector', 'mixed', 'partial'].flatMap((view) => QUERIES.map((base): [string, string] => [view, base]));
  return fe.compareAll(label, queries, STORED_REDUCE_HEADER);
}

beforeAll(async () => {
  fe = await frontAndEngine(DB, [{ _id: '_design/pool', views: VIEWS }, { _id: 'not-a-token', type: 'other' }, ...Array.from({ length: 600 }, (_, n) => token(n))]);
  server = fe.server;
});

afterAll(async () => {
  await server?.stop();
});

test('stored reductions answer exactly as the engine on a fresh database', async () => {
  await compareAll('fresh');
});

test('after updates, deletes and inserts the stored answers still equal the engine (never stale)', async () => {
  const all = (await rawRequest(server.url, 'GET', `/${DB}/_all_docs?include_docs=true&startkey=%22t_%22&endkey=%22t_%EF%BF%BF%22`, { auth: server.admin })).json();
  const docs = all.rows.map((r: { doc: { _id: string; _rev: string } }) => r.doc);
  const updates = docs.slice(0, 150).map((d: { _id: string; _rev: string }, i: number) => ({ ...token(Number(d._id.slice(2)), 1 + (i % 3)), _rev: d._rev }));
  const deletes = docs.slice(150, 210).map((d: { _id: string; _rev: string }) => ({ _id: d._id, _rev: d._rev, _deleted: true }));
  await bulk([...updates, ...deletes, ...Array.from({ length: 40 }, (_, k) => token(1000 + k))]);
  await compareAll('after bulk changes');
  // One document at a time, each followed by a query: the index catches up before answering.
  for (let k = 0; k < 10; k++) {
    const id = `t_${String(300 + k).padStart(5, '0')}`;
    const doc = (await rawRequest(server.url, 'GET', `/${DB}/${id}`, { auth: server.admin })).json();
    const put = await rawRequest(server.url, 'PUT', `/${DB}/${id}`, { auth: server.admin, body: JSON.stringify({ ...token(300 + k, 2), _rev: doc._rev }) });
    assert.equal(put.status, 201);
    const [front, engine] = await Promise.all([viaFront('progress', 'group_level=3'), viaEngine('progress', 'group_level=3')]);
    assert.deepEqual(front.json(), engine.json());
  }
});

test('a changed design document replaces the stored index', async () => {
  const ddoc = (await rawRequest(server.url, 'GET', `/${DB}/_design/pool`, { auth: server.admin })).json();
  ddoc.views.progress.map = "function (doc) { if (doc.type === 'token') emit([doc.status, doc.obsid], 1); }";
  assert.equal((await rawRequest(server.url, 'PUT', `/${DB}/_design/pool`, { auth: server.admin, body: JSON.stringify(ddoc) })).status, 201);
  const front = (await viaFront('progress', 'group_level=1')).json();
  assert.deepEqual(front, (await viaEngine('progress', 'group_level=1')).json());
  assert.deepEqual(
    front.rows.map((r: { key: string[] }) => r.key[0]),
    [...STATUSES].sort(),
  );
});

test('queries the index does not answer exactly go to the engine', async () => {
  for (const [view, query] of [
    ['progress', 'reduce=false&limit=3'],
    ['progress', 'group=true&stale=ok'],
    ['progress', 'include_docs=true&reduce=false&limit=1'],
    ['custom', 'group=true'],
    ['progress', 'group=yes'],
    ['progress', 'startkey=not-json'],
    ['progress', 'startkey=%5B%22z%22%5D&endkey=%5B%22a%22%5D'],
  ] as const) {
    const [front, engine] = await Promise.all([viaFront(view, query), viaEngine(view, query)]);
    assert.equal(front.headers[STORED_REDUCE_HEADER], undefined, `${view}?${query}`);
    assert.equal(front.status, engine.status, `${view}?${query}`);
    assert.deepEqual(front.json(), engine.json(), `${view}?${query}`);
  }
});

test('stored reductions keep access control: anonymous 401, non-member 403, member answered', async () => {
  await rawRequest(server.url, 'PUT', '/_users/org.couchdb.user:carol', {
    auth: server.admin,
    body: JSON.stringify({ name: 'carol', password: 'carol-pw', roles: ['readers'], type: 'user' }),
  });
  await rawRequest(server.url, 'PUT', `/${DB}/_security`, { auth: server.admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: ['dave'], roles: [] } }) });
  const carol = { name: 'carol', password: 'carol-pw' };
  const path = `/${DB}/_design/pool/_view/overview_total?group=true`;
  assert.equal((await rawRequest(server.url, 'GET', path)).status, 401);
  const denied = await rawRequest(server.url, 'GET', path, { auth: carol });
  assert.equal(denied.status, 403, denied.body);
  assert.equal(denied.headers[STORED_REDUCE_HEADER], undefined);
  await rawRequest(server.url, 'PUT', `/${DB}/_security`, { auth: server.admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: [], roles: ['readers'] } }) });
  const allowed = await rawRequest(server.url, 'GET', path, { auth: carol });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers[STORED_REDUCE_HEADER], 'stored');
  assert.deepEqual(allowed.json(), (await viaEngine('overview_total', 'group=true')).json());
});

test('a database deleted and created again through the front is indexed afresh', async () => {
  assert.equal((await rawRequest(server.url, 'DELETE', `/${DB}`, { auth: server.admin })).status, 200);
  assert.equal((await rawRequest(server.url, 'PUT', `/${DB}`, { auth: server.admin })).status, 201);
  await bulk([{ _id: '_design/pool', views: VIEWS }, ...Array.from({ length: 30 }, (_, n) => token(n, 3))]);
  await compareAll('recreated');
});
