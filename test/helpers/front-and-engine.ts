/** For tests of the front's stored indexes: one view query asked of the front and of the engine behind it. */
import assert from 'node:assert/strict';
import { startEmbeddedTestServer, type EmbeddedTestServer } from './server.js';
import { rawRequest, type Reply } from './http.js';

export interface FrontAndEngine {
  server: EmbeddedTestServer;
  viaFront(view: string, query: string): Promise<Reply>;
  viaEngine(view: string, query: string): Promise<Reply>;
  bulk(docs: object[]): Promise<void>;
  /** Each [view, query]: the same status and body from both, and the front's answer marked by `header` as stored. */
  compareAll(label: string, queries: Iterable<[string, string]>, header: string): Promise<void>;
}

/** A server with database `db` holding `docs` (design document `pool` among them). */
export async function frontAndEngine(db: string, docs: object[]): Promise<FrontAndEngine> {
  const server = await startEmbeddedTestServer();
  const engineUrl = `http://127.0.0.1:${await server.embedded.engine.enginePort()}`;
  const ask = (base: string, view: string, query: string) => rawRequest(base, 'GET', `/${db}/_design/pool/_view/${view}?${query}`, { auth: server.admin });
  const fe: FrontAndEngine = {
    server,
    viaFront: (view, query) => ask(server.url, view, query),
    viaEngine: (view, query) => ask(engineUrl, view, query),
    async bulk(batch) {
      const r = await rawRequest(server.url, 'POST', `/${db}/_bulk_docs`, { auth: server.admin, body: JSON.stringify({ docs: batch }) });
      assert.equal(r.status, 201, r.body);
      assert.ok(r.json().every((x: { ok?: boolean }) => x.ok), r.body);
    },
    async compareAll(label, queries, header) {
      for (const [view, query] of queries) {
        const [front, engine] = await Promise.all([fe.viaFront(view, query), fe.viaEngine(view, query)]);
        assert.equal(front.status, engine.status, `${label} ${view}?${query}: ${front.body} vs ${engine.body}`);
        assert.deepEqual(front.json(), engine.json(), `${label} ${view}?${query}`);
        if (front.status === 200) assert.equal(front.headers[header], 'stored', `${label} ${view}?${query} was not answered from the stored index`);
      }
    },
  };
  assert.equal((await rawRequest(server.url, 'PUT', `/${db}`, { auth: server.admin })).status, 201);
  await fe.bulk(docs);
  return fe;
}
