/**
 * Creating and deleting a database while requests on it are in flight. The engine (PouchDB) leaves
 * such a request unanswered for ever; the front must give every one of them an answer.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './helpers/server.js';
import { rawRequest } from './helpers/http.js';

let server: EmbeddedTestServer;

beforeAll(async () => {
  server = await startEmbeddedTestServer();
});

afterAll(async () => {
  await server?.stop();
});

const VIEW = '{"views":{"all":{"map":"function (doc) { emit(doc._id, 1); }","reduce":"_count"}}}';
const ON_DB: { method: string; sub: string; body?: string }[] = [
  { method: 'PUT', sub: '' },
  { method: 'DELETE', sub: '' },
  { method: 'PUT', sub: '' },
  { method: 'GET', sub: '' },
  { method: 'POST', sub: '', body: '{"type":"token"}' },
  { method: 'PUT', sub: '/d1', body: '{"type":"token"}' },
  { method: 'DELETE', sub: '/d1' },
  { method: 'GET', sub: '/d1' },
  { method: 'PUT', sub: '/_design/v', body: VIEW },
  { method: 'GET', sub: '/_design/v/_view/all' },
  { method: 'GET', sub: '/_all_docs' },
  { method: 'POST', sub: '/_bulk_docs', body: '{"docs":[{"a":1},{"a":2}]}' },
  { method: 'POST', sub: '/_find', body: '{"selector":{}}' },
  { method: 'GET', sub: '/_changes' },
];

test('requests racing with the creation and deletion of their database all get answers, and CouchDB statuses', async () => {
  const failures: string[] = [];
  for (let round = 0; round < 120; round++) {
    const db = `/racing-${round % 3}`;
    await Promise.all(
      ON_DB.map(async ({ method, sub, body }) => {
        try {
          const reply = await rawRequest(server.url, method, db + sub, { auth: server.admin, body, timeoutMs: 10_000 });
          if (reply.status >= 500) failures.push(`round ${round}: ${method} ${db}${sub} -> ${reply.status} ${reply.body}`);
        } catch (err) {
          failures.push(`round ${round}: ${(err as Error).message}`);
        }
      }),
    );
    if (failures.length > 0) break;
  }
  assert.deepEqual(failures, []);
  assert.equal(server.embedded.engine.restarts, 0);
});
