/**
 * The engine's cheap reads (server/embedded/engine-reads.ts): `_all_docs` with keys answered by point
 * reads must equal PouchDB's own per-key answers (`key=`), for live, updated, deleted, conflicting,
 * design and missing documents; and validate functions read once per update sequence must still see
 * a design document change at the very next write, in bulk or not.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './helpers/server.js';
import { rawRequest } from './helpers/http.js';

let server: EmbeddedTestServer;
let engineUrl: string;
const DB = 'reads';

const call = (method: string, path: string, body?: unknown, base = engineUrl) =>
  rawRequest(base, method, `/${DB}${path}`, { auth: server.admin, body: body === undefined ? undefined : JSON.stringify(body) });

beforeAll(async () => {
  server = await startEmbeddedTestServer();
  engineUrl = `http://127.0.0.1:${await server.embedded.engine.enginePort()}`;
  assert.equal((await call('PUT', '')).status, 201);
});

afterAll(async () => {
  await server?.stop();
});

test('_all_docs with keys equals the per-key answers, deleted and conflicting documents included', async () => {
  const docs = Array.from({ length: 30 }, (_, n) => ({ _id: `d${n}`, n, _attachments: n === 7 ? { 'a.txt': { content_type: 'text/plain', data: Buffer.from('x').toString('base64') } } : undefined }));
  const made = (await call('POST', '/_bulk_docs', { docs: [...docs, { _id: '_design/x', views: {} }] })).json() as { id: string; rev: string }[];
  const rev = new Map(made.map((r) => [r.id, r.rev]));
  assert.equal((await call('PUT', `/d1`, { n: 1, again: true, _rev: rev.get('d1') })).status, 201);
  assert.equal((await call('DELETE', `/d2?rev=${rev.get('d2')}`)).status, 200);
  // A conflict: a second branch of d3 written as a replicator would.
  assert.equal((await call('POST', '/_bulk_docs', { new_edits: false, docs: [{ _id: 'd3', _rev: '1-ffffffffffffffffffffffffffffffff', branch: true }] })).status, 201);

  const keys = ['d0', 'd1', 'd2', 'd3', 'd7', 'missing', '_design/x', 'd0', '_local/none', 'd29'];
  for (const query of ['', '?include_docs=true', '?include_docs=true&conflicts=true']) {
    const many = (await call('POST', `/_all_docs${query}`, { keys })).json() as { total_rows: number; rows: unknown[] };
    const one = await Promise.all(
      keys.map(async (k) => {
        const sep = query ? '&' : '?';
        const r = (await call('GET', `/_all_docs${query}${sep}key=${encodeURIComponent(JSON.stringify(k))}&deleted=ok`)).json() as { rows: unknown[] };
        return r.rows[0] ?? { key: k, error: 'not_found' };
      }),
    );
    assert.deepEqual(many.rows, one, `keys${query}`);
    const row = (k: string) => many.rows[keys.indexOf(k)] as { value?: { deleted?: boolean }; doc?: { _conflicts?: string[] } | null; error?: string };
    assert.equal(row('d2').value?.deleted, true);
    assert.equal(row('missing').error, 'not_found');
    if (query.includes('conflicts')) assert.equal(row('d3').doc?._conflicts?.length, 1);
    assert.equal(many.total_rows, 30, 'total_rows counts live documents, design documents included');
  }
  // Through the front as agents ask: the same rows.
  const front = (await call('POST', '/_all_docs?include_docs=true', { keys }, server.url)).json() as { rows: unknown[] };
  const engine = (await call('POST', '/_all_docs?include_docs=true', { keys })).json() as { rows: unknown[] };
  assert.deepEqual(front.rows, engine.rows);
});

test('a validate function added, changed or removed applies to the very next write, single or bulk', async () => {
  const forbid = (field: string) => `function (newDoc) { if (newDoc.${field}) throw({forbidden: '${field} refused'}); }`;
  const write = async (docs: object[]) => ((await call('POST', '/_bulk_docs', { docs }, server.url)).json() as { id: string; ok?: boolean; error?: string }[]).sort((a, b) => a.id.localeCompare(b.id));
  let n = 0;
  const doc = (field: string) => ({ _id: `v${n++}`, [field]: true });

  const put = await call('PUT', '/_design/check', { validate_doc_update: forbid('bad') }, server.url);
  assert.equal(put.status, 201);
  let rows = await write([doc('bad'), doc('worse'), doc('fine')]);
  assert.deepEqual(rows.map((r) => r.error ?? 'ok'), ['forbidden', 'ok', 'ok']);

  const changed = await call('PUT', '/_design/check', { _rev: put.json().rev, validate_doc_update: forbid('worse') }, server.url);
  assert.equal(changed.status, 201);
  rows = await write([doc('bad'), doc('worse')]);
  assert.deepEqual(rows.map((r) => r.error ?? 'ok'), ['ok', 'forbidden']);
  assert.equal((await call('PUT', `/v${n++}`, { worse: true }, server.url)).status, 403);

  assert.equal((await call('DELETE', `/_design/check?rev=${changed.json().rev}`, undefined, server.url)).status, 200);
  rows = await write([doc('bad'), doc('worse')]);
  assert.deepEqual(rows.map((r) => r.error ?? 'ok'), ['ok', 'ok']);
});
