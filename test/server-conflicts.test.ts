/**
 * Conflicts answered by the front (server/embedded/stale-revisions.ts): a write on a revision that
 * already has a child gets CouchDB's 409 without reaching the engine, writes racing on one revision
 * leave exactly one winner, and nothing that CouchDB would accept is ever refused.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './helpers/server.js';
import { rawRequest, type Reply } from './helpers/http.js';
import { KNOWN_CONFLICT_HEADER } from '../server/embedded/front.js';

let server: EmbeddedTestServer;
const DB = 'conflicts';

beforeAll(async () => {
  server = await startEmbeddedTestServer();
  assert.equal((await rawRequest(server.url, 'PUT', `/${DB}`, { auth: server.admin })).status, 201);
  // Refuses documents marked bad, as a token pool's validate function refuses malformed tokens.
  const validate = "function (newDoc) { if (newDoc.bad) throw({ forbidden: 'bad document' }); }";
  assert.equal((await put(`_design/rules`, { validate_doc_update: validate })).status, 201);
});
afterAll(async () => server?.stop());

function put(id: string, doc: object, query = ''): Promise<Reply> {
  return rawRequest(server.url, 'PUT', `/${DB}/${id}${query}`, { auth: server.admin, body: JSON.stringify(doc) });
}

async function created(id: string, doc: object = { n: 0 }): Promise<string> {
  const r = await put(id, doc);
  assert.equal(r.status, 201, r.body);
  return r.json().rev as string;
}

function assertKnownConflict(r: Reply, label: string): void {
  assert.equal(r.status, 409, `${label}: ${r.body}`);
  assert.deepEqual(r.json(), { error: 'conflict', reason: 'Document update conflict.' }, label);
  assert.equal(r.headers[KNOWN_CONFLICT_HEADER], 'known', `${label}: the engine was asked`);
}

test('a write on a revision that has a child is refused by the front, by PUT, POST and DELETE', async () => {
  const rev1 = await created('a');
  const rev2 = (await put('a', { _rev: rev1, n: 1 })).json().rev as string;
  assertKnownConflict(await put('a', { _rev: rev1, n: 2 }), 'PUT with _rev');
  assertKnownConflict(await put('a', { n: 2 }, `?rev=${rev1}`), 'PUT with ?rev');
  assertKnownConflict(await rawRequest(server.url, 'POST', `/${DB}`, { auth: server.admin, body: JSON.stringify({ _id: 'a', _rev: rev1, n: 2 }) }), 'POST');
  assertKnownConflict(await rawRequest(server.url, 'DELETE', `/${DB}/a?rev=${rev1}`, { auth: server.admin }), 'DELETE');
  assertKnownConflict(await rawRequest(server.url, 'PUT', `/${DB}/a`, { auth: server.admin, headers: { 'if-match': `"${rev1}"` }, body: JSON.stringify({ n: 2 }) }), 'If-Match');
  const doc = (await rawRequest(server.url, 'GET', `/${DB}/a`, { auth: server.admin })).json();
  assert.equal(doc._rev, rev2);
  assert.equal(doc.n, 1);
  // The current revision still takes writes.
  assert.equal((await put('a', { _rev: rev2, n: 3 })).status, 201);
});

test('writes racing on one revision: exactly one wins, every loser gets a 409 without the engine', async () => {
  const rev1 = await created('race');
  const replies = await Promise.all(Array.from({ length: 24 }, (_, i) => put('race', { _rev: rev1, n: i })));
  const winners = replies.filter((r) => r.status === 201);
  assert.equal(winners.length, 1, replies.map((r) => r.status).join(' '));
  const losers = replies.filter((r) => r.status !== 201);
  for (const r of losers) assertKnownConflict(r, 'loser');
  const doc = (await rawRequest(server.url, 'GET', `/${DB}/race`, { auth: server.admin })).json();
  assert.equal(doc._rev, winners[0]!.json().rev);
});

test('a write the engine refused leaves its revision writable: the next write on it goes through', async () => {
  const rev1 = await created('v');
  const refused = await Promise.all([put('v', { _rev: rev1, bad: true }), put('v', { _rev: rev1, bad: true })]);
  for (const r of refused) assert.equal(r.status, 403, r.body);
  const ok = await put('v', { _rev: rev1, n: 1 });
  assert.equal(ok.status, 201, ok.body);
});

test('what the front cannot judge is the engine\'s: disagreeing revisions, unknown revisions, design documents', async () => {
  const rev1 = await created('d');
  const rev2 = (await put('d', { _rev: rev1, n: 1 })).json().rev as string;
  // ?rev and _rev disagree: CouchDB answers 400; the front leaves it to the engine rather than say 409.
  const mixed = await put('d', { _rev: rev2, n: 2 }, `?rev=${rev1}`);
  assert.equal(mixed.headers[KNOWN_CONFLICT_HEADER], undefined, mixed.body);
  // A revision the front never saw superseded: the engine's own 409.
  const unknown = await put('d', { _rev: '1-00000000000000000000000000000000', n: 2 });
  assert.equal(unknown.status, 409, unknown.body);
  assert.equal(unknown.headers[KNOWN_CONFLICT_HEADER], undefined);
  // Design documents are documents too.
  const current = (await rawRequest(server.url, 'GET', `/${DB}/_design/rules`, { auth: server.admin })).json();
  assert.equal((await put('_design/rules', { ...current, language: 'javascript' })).status, 201);
  assertKnownConflict(await put('_design/rules', current), 'stale design document');
});

test('a database deleted and created again forgets what the front knew of its documents', async () => {
  const rev1 = await created('gone');
  assert.equal((await put('gone', { _rev: rev1, n: 1 })).status, 201);
  assert.equal((await rawRequest(server.url, 'DELETE', `/${DB}`, { auth: server.admin })).status, 200);
  assert.equal((await rawRequest(server.url, 'PUT', `/${DB}`, { auth: server.admin })).status, 201);
  const again = await put('gone', { _rev: rev1, n: 2 });
  // The engine decides now (no such document: its 409, or 404), not the front.
  assert.equal(again.headers[KNOWN_CONFLICT_HEADER], undefined, again.body);
});
