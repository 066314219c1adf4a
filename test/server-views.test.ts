/**
 * Stored views, row listings: the front's answers to map-only and reduce=false view queries (key
 * ranges, limit/skip, descending, include_docs) must equal the engine's own answers (queried directly,
 * bypassing the front), through updates and deletes, and keep access control.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import type { EmbeddedTestServer } from './helpers/server.js';
import { rawRequest } from './helpers/http.js';
import { frontAndEngine, type FrontAndEngine } from './helpers/front-and-engine.js';
import { STORED_VIEW_HEADER } from '../server/embedded/front.js';

let server: EmbeddedTestServer;
const DB = 'views';

const VIEWS = {
  claimable: { map: "function (doc) { if (doc.type === 'token' && doc.status === 'todo') emit([-(doc.priority || 0), doc.created], null); }" },
  by_id: { map: "function (doc) { if (doc.type === 'token' && doc.status === 'todo') emit(doc._id, doc._id); }" },
  leases: { map: "function (doc) { if (doc.type === 'token' && doc.status === 'running') emit(doc.expires, null); }" },
  progress: { map: "function (doc) { if (doc.type === 'token') emit([doc.step, doc.status], 1); }", reduce: '_count' },
  custom: { map: "function (doc) { if (doc.type === 'token') emit(doc.status, doc.n); }", reduce: 'function (keys, values) { return values.length; }' },
  // Several rows per document, equal keys across documents, values of every kind.
  multi: {
    map: `function (doc) {
  var keys = [null, false, true, -1, 0, 2.5, '', 'A', 'a', [], ['a', 1], {}, {a: 1}];
  if (doc.type === 'token') { emit(keys[doc.n % keys.length], doc.n); emit(keys[(doc.n * 5) % keys.length], {n: doc.n}); emit('same', null); }
}`,
  },
  // Linked documents: include_docs brings the document the value names.
  linked: { map: "function (doc) { if (doc.type === 'token' && doc.n % 7 === 0) emit(doc.n, {_id: 'meta'}); }" },
  partial: { map: "function (doc) { if (doc.type === 'token') { emit(doc.step, 1); if (doc.n % 5 === 0) throw new Error('boom'); emit('after', 1); } }" },
};

const STATUSES = ['todo', 'running', 'done', 'error'];
const STEPS = ['avg', 'cal', 'img'];

function token(n: number, variant = 0) {
  return {
    _id: `t_${String(n).padStart(5, '0')}`,
    type: 'token',
    step: STEPS[(n + variant) % STEPS.length]!,
    status: STATUSES[(n + variant) % STATUSES.length]!,
    priority: (n * 13 + variant) % 3,
    created: 1000 + (n % 50),
    expires: 5000 + ((n * 31) % 200),
    n: n + variant,
  };
}

const j = (v: unknown) => encodeURIComponent(JSON.stringify(v));

const QUERIES = [
  '',
  'limit=5',
  'limit=0',
  'skip=3&limit=4',
  'skip=100000',
  'descending=true&limit=7',
  'descending=true&skip=2&limit=3',
  'reduce=false&limit=10',
  'include_docs=true&limit=5',
  'include_docs=true&skip=20&limit=10&descending=true',
  `startkey=${j([-1])}&endkey=${j([-1, {}])}&limit=20`,
  `startkey=${j([-2, 1010])}&limit=5`,
  `endkey=${j(5100)}&include_docs=true&limit=15`,
  `endkey=${j(5100)}&inclusive_end=false`,
  `startkey=${j(5150)}&endkey=${j(5100)}&descending=true&inclusive_end=false`,
  `startkey=${j('t_00100')}&endkey=${j('t_00200')}&skip=5&limit=10`,
  `key=${j('t_00104')}&include_docs=true`,
  `key=${j('same')}&limit=10&skip=10`,
  `key=${j(['a', 1])}`,
  `start_key=${j('a')}&end_key=${j({})}`,
  `startkey=${j(null)}&endkey=${j(true)}&descending=false`,
];

let fe: FrontAndEngine;
const viaFront = (view: string, query: string) => fe.viaFront(view, query);
const viaEngine = (view: string, query: string) => fe.viaEngine(view, query);
const bulk = (docs: object[]) => fe.bulk(docs);

/** Every query on every view: same status and body as the engine, answered from the stored index. */
function compareAll(label: string): Promise<void> {
  const queries = ['claimable', 'by_id', 'leases', 'progress', 'custom', 'multi', 'linked', 'partial'].flatMap((view) => QUERIES.map((base): [string, string] => [view, view === 'progress' || view === 'custom' ? `reduce=false&${base.replace('reduce=false&', '')}` : base]));
  return fe.compareAll(label, queries, STORED_VIEW_HEADER);
}

beforeAll(async () => {
  fe = await frontAndEngine(DB, [{ _id: '_design/pool', views: VIEWS }, { _id: 'meta', type: 'other', note: 'linked' }, ...Array.from({ length: 400 }, (_, n) => token(n))]);
  server = fe.server;
});

afterAll(async () => {
  await server?.stop();
});

test('row listings answer exactly as the engine on a fresh database', async () => {
  await compareAll('fresh');
});

test('after updates, deletes and inserts the listings still equal the engine (never stale)', async () => {
  const all = (await rawRequest(server.url, 'GET', `/${DB}/_all_docs?include_docs=true&startkey=%22t_%22&endkey=%22t_%EF%BF%BF%22`, { auth: server.admin })).json();
  const docs = all.rows.map((r: { doc: { _id: string; _rev: string } }) => r.doc);
  const updates = docs.slice(0, 100).map((d: { _id: string; _rev: string }, i: number) => ({ ...token(Number(d._id.slice(2)), 1 + (i % 3)), _rev: d._rev }));
  const deletes = docs.slice(100, 140).map((d: { _id: string; _rev: string }) => ({ _id: d._id, _rev: d._rev, _deleted: true }));
  await bulk([...updates, ...deletes, ...Array.from({ length: 30 }, (_, k) => token(1000 + k))]);
  await compareAll('after bulk changes');
  // A claim loop in miniature: take the first claimable row, update it, ask again at once.
  for (let k = 0; k < 10; k++) {
    const first = (await viaFront('claimable', 'include_docs=true&limit=1')).json();
    const doc = first.rows[0].doc;
    const put = await rawRequest(server.url, 'PUT', `/${DB}/${doc._id}`, { auth: server.admin, body: JSON.stringify({ ...doc, status: 'running' }) });
    assert.equal(put.status, 201);
    const [front, engine] = await Promise.all([viaFront('claimable', 'include_docs=true&limit=3'), viaEngine('claimable', 'include_docs=true&limit=3')]);
    assert.deepEqual(front.json(), engine.json());
    assert.ok(front.json().rows.every((r: { id: string }) => r.id !== doc._id), 'a claimed token is never listed again');
  }
});

test('single-document writes applied by the front at once, mixed with writes it cannot read, still equal the engine', async () => {
  // A seeded walk over PUT, POST, DELETE, PUT with _deleted, ?rev=, attachments and bulk writes.
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const write = (method: string, path: string, body?: object) =>
    rawRequest(server.url, method, path ? `/${DB}/${path}` : `/${DB}`, { auth: server.admin, body: body === undefined ? undefined : JSON.stringify(body) });
  const current = async (id: string) => (await rawRequest(server.url, 'GET', `/${DB}/${id}`, { auth: server.admin })).json();
  for (let step = 0; step < 120; step++) {
    const n = Math.floor(random() * 450);
    const id = `t_${String(n).padStart(5, '0')}`;
    const doc = await current(id);
    const exists = typeof doc._rev === 'string';
    const fields = token(n, Math.floor(random() * 4));
    const op = Math.floor(random() * 7);
    let r;
    if (!exists) r = op % 2 ? await write('PUT', id, fields) : await write('POST', '', { ...fields, _id: id });
    else if (op === 0) r = await write('PUT', id, { ...fields, _rev: doc._rev });
    else if (op === 1) r = await write('POST', '', { ...fields, _id: id, _rev: doc._rev });
    else if (op === 2) r = await write('DELETE', `${id}?rev=${doc._rev}`);
    else if (op === 3) r = await write('PUT', id, { ...fields, _rev: doc._rev, _deleted: true });
    else if (op === 4) r = await write('PUT', `${id}?rev=${doc._rev}`, fields);
    else if (op === 5) r = await write('PUT', id, { ...fields, _rev: doc._rev, _attachments: { 'a.txt': { content_type: 'text/plain', data: Buffer.from(`x${step}`).toString('base64') } } });
    else {
      await bulk([{ ...fields, _id: id, _rev: doc._rev }, token(2000 + step)]);
      r = { status: 201 };
    }
    assert.ok(r.status === 201 || r.status === 200, `step ${step} op ${op}: ${r.status} ${'body' in r ? r.body : ''}`);
    if (step % 10 === 9) await compareAll(`after write-through step ${step}`);
    else {
      const [front, engine] = await Promise.all([viaFront('claimable', 'include_docs=true'), viaEngine('claimable', 'include_docs=true')]);
      assert.deepEqual(front.json(), engine.json(), `step ${step} op ${op}`);
    }
  }
});

test('bulk writes the front can read (taken at once) and those it cannot (read from _changes) leave the listings equal to the engine', async () => {
  const revOf = async (id: string) => (await rawRequest(server.url, 'GET', `/${DB}/${id}`, { auth: server.admin })).json()._rev as string | undefined;
  const post = async (body: object) => {
    const r = await rawRequest(server.url, 'POST', `/${DB}/_bulk_docs`, { auth: server.admin, body: JSON.stringify(body) });
    assert.equal(r.status, 201, r.body);
    return r.json() as { id: string; ok?: boolean; error?: string }[];
  };
  const same = async (label: string) => {
    const [front, engine] = await Promise.all([viaFront('claimable', 'include_docs=true'), viaEngine('claimable', 'include_docs=true')]);
    assert.deepEqual(front.json(), engine.json(), label);
  };
  for (let round = 0; round < 6; round++) {
    const ids = Array.from({ length: 40 }, (_, k) => `t_${String(3000 + round * 40 + k).padStart(5, '0')}`);
    // Release-like: waiting tokens made todo in one bulk; one of them on a stale revision (409 row).
    await post({ docs: ids.map((id, k) => ({ ...token(3000 + k, 1), _id: id, status: 'waiting' })) });
    const revs = await Promise.all(ids.map(revOf));
    const rows = await post({ docs: ids.map((id, k) => ({ ...token(3000 + k), _id: id, status: 'todo', _rev: k === 5 ? '1-00000000000000000000000000000000' : revs[k] })) });
    assert.equal(rows.filter((r) => r.error === 'conflict').length, 1);
    await same(`round ${round}: release-like bulk`);
    // Deletes and updates mixed, then bodies the front cannot tell: new_edits=false, no _id, one id twice.
    await post({ docs: [{ _id: ids[0], _rev: await revOf(ids[0]!), _deleted: true }, { ...token(3001, round), _id: ids[1], _rev: await revOf(ids[1]!) }] });
    await same(`round ${round}: delete and update`);
    await post({ new_edits: false, docs: [{ ...token(3002), _id: ids[2], _rev: `9-${'a'.repeat(32)}`, status: 'todo' }] });
    await same(`round ${round}: new_edits=false`);
    await post({ docs: [{ ...token(3003), _id: undefined }, { ...token(3004), _id: ids[3], _rev: await revOf(ids[3]!), status: 'running' }, { _id: ids[3], status: 'todo' }] });
    await same(`round ${round}: unnamed and repeated documents`);
  }
  await compareAll('after bulk writes');
});

test('queries the index does not answer exactly go to the engine', async () => {
  for (const [view, query] of [
    ['claimable', 'reduce=true'],
    ['claimable', 'group=true'],
    ['progress', 'reduce=false&group=true'],
    ['progress', 'include_docs=true'],
    ['custom', 'group=true'],
    ['claimable', 'stale=ok&limit=2'],
    ['claimable', 'conflicts=true&include_docs=true&limit=2'],
    ['claimable', 'update_seq=true&limit=2'],
    ['claimable', 'limit=-1'],
    ['claimable', `startkey=${j([0])}&endkey=${j([-2])}`],
  ] as const) {
    const [front, engine] = await Promise.all([viaFront(view, query), viaEngine(view, query)]);
    assert.equal(front.headers[STORED_VIEW_HEADER], undefined, `${view}?${query}`);
    assert.equal(front.status, engine.status, `${view}?${query}`);
    assert.deepEqual(front.json(), engine.json(), `${view}?${query}`);
  }
});

test('row listings keep access control: anonymous 401, non-member 403, member answered with documents', async () => {
  await rawRequest(server.url, 'PUT', '/_users/org.couchdb.user:erin', {
    auth: server.admin,
    body: JSON.stringify({ name: 'erin', password: 'erin-pw', roles: ['agents'], type: 'user' }),
  });
  await rawRequest(server.url, 'PUT', `/${DB}/_security`, { auth: server.admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: ['frank'], roles: [] } }) });
  const erin = { name: 'erin', password: 'erin-pw' };
  const path = `/${DB}/_design/pool/_view/claimable?include_docs=true&limit=3`;
  assert.equal((await rawRequest(server.url, 'GET', path)).status, 401);
  const denied = await rawRequest(server.url, 'GET', path, { auth: erin });
  assert.equal(denied.status, 403, denied.body);
  assert.equal(denied.headers[STORED_VIEW_HEADER], undefined);
  await rawRequest(server.url, 'PUT', `/${DB}/_security`, { auth: server.admin, body: JSON.stringify({ admins: { names: [], roles: [] }, members: { names: [], roles: ['agents'] } }) });
  const allowed = await rawRequest(server.url, 'GET', path, { auth: erin });
  assert.equal(allowed.status, 200);
  assert.equal(allowed.headers[STORED_VIEW_HEADER], 'stored');
  assert.deepEqual(allowed.json(), (await viaEngine('claimable', 'include_docs=true&limit=3')).json());
  assert.equal(allowed.json().rows.length, 3);
  assert.ok(allowed.json().rows.every((r: { doc?: { _id: string } }) => r.doc?._id), 'documents included');
});
