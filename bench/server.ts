/**
 * Embedded server performance: grouped reduce queries answered by the front's stored reductions vs the
 * engine's own view code, and single-document update rates through the front vs direct to the engine.
 * LevelDB engine (what `tokenpool server` runs). Writes bench-results/server.json.
 * Sizes: BENCH_SERVER_SIZES=10000,100000 (default).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { STORED_REDUCE_HEADER } from '../server/embedded/front.js';
import { rawRequest } from '../test/helpers/http.js';
import { writeResults } from './results.js';

const SIZES = (process.env.BENCH_SERVER_SIZES ?? '10000,100000').split(',').map(Number);
const STATUSES = ['queued', 'running', 'done', 'error'];
const VIEWS = {
  progress: { map: "function (doc) { if (doc.type === 'token') emit([doc.obsid, doc.step, doc.status], 1); }", reduce: '_count' },
  overview_total: { map: "function (doc) { if (doc.type === 'token') emit(doc.state, 1); }", reduce: '_sum' },
};
const QUERIES = { progress: 'group_level=3', overview_total: 'group=true' };

function token(n: number) {
  const status = STATUSES[n % 4]!;
  return { _id: `t_L${200000 + (n % 20)}_s${n % 3}_SB${String(n).padStart(6, '0')}`, type: 'token', obsid: `L${200000 + (n % 20)}`, step: `step${n % 3}`, status, state: status === 'done' ? 'done' : 'todo' };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: Math.round((performance.now() - t0) * 10) / 10, value };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const log = createLogger('bench-server', { pretty: false, level: 'warn' });
  const results: Record<string, unknown>[] = [];
  for (const size of SIZES) {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-server-'));
    const server = await startEmbeddedServer({ port: 0, dataDir, log });
    try {
      const auth = server.admin;
      const engineUrl = `http://127.0.0.1:${await server.engine.enginePort()}`;
      await rawRequest(server.url, 'PUT', '/bench', { auth });
      const load = await timed(async () => {
        for (let i = 0; i < size; i += 2000) {
          const docs = Array.from({ length: Math.min(2000, size - i) }, (_, k) => token(i + k));
          const r = await rawRequest(engineUrl, 'POST', '/bench/_bulk_docs', { auth, body: JSON.stringify({ docs }) });
          if (r.status !== 201) throw new Error(`bulk load failed: ${r.status} ${r.body.slice(0, 200)}`);
        }
        await rawRequest(engineUrl, 'PUT', '/bench/_design/pool', { auth, body: JSON.stringify({ views: VIEWS }) });
      });
      const row: Record<string, unknown> = { docs: size, bulk_load_ms: load.ms };
      for (const [view, query] of Object.entries(QUERIES)) {
        const p = `/bench/_design/pool/_view/${view}?${query}`;
        const first = await timed(() => rawRequest(server.url, 'GET', p, { auth }));
        if (first.value.headers[STORED_REDUCE_HEADER] !== 'stored') throw new Error(`${view} was not answered from stored reductions`);
        const warm: number[] = [];
        for (let i = 0; i < 20; i++) warm.push((await timed(() => rawRequest(server.url, 'GET', p, { auth }))).ms);
        // One document changed before each query: the index catches up incrementally.
        const afterUpdate: number[] = [];
        for (let i = 0; i < 10; i++) {
          const id = token(i)._id;
          const doc = (await rawRequest(server.url, 'GET', `/bench/${id}`, { auth })).json();
          await rawRequest(server.url, 'PUT', `/bench/${id}`, { auth, body: JSON.stringify({ ...doc, status: STATUSES[(i + 1) % 4] }) });
          afterUpdate.push((await timed(() => rawRequest(server.url, 'GET', p, { auth }))).ms);
        }
        const engineFirst = await timed(() => rawRequest(engineUrl, 'GET', p, { auth, timeoutMs: 3_600_000 }));
        const engineWarm: number[] = [];
        for (let i = 0; i < 3; i++) engineWarm.push((await timed(() => rawRequest(engineUrl, 'GET', p, { auth, timeoutMs: 3_600_000 }))).ms);
        const same = isDeepStrictEqual((await rawRequest(server.url, 'GET', p, { auth })).json(), (await rawRequest(engineUrl, 'GET', p, { auth, timeoutMs: 3_600_000 })).json());
        row[view] = {
          query,
          groups: first.value.json().rows.length,
          stored_first_query_ms: first.ms,
          stored_warm_median_ms: median(warm),
          stored_after_one_update_median_ms: median(afterUpdate),
          engine_first_query_ms: engineFirst.ms,
          engine_warm_median_ms: median(engineWarm),
          speedup_warm: Math.round(median(engineWarm) / median(warm)),
          same_answer: same,
        };
        console.error(JSON.stringify({ size, view, ...(row[view] as object) }));
      }
      results.push(row);
    } finally {
      await server.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }

  const writes = await updateRates(log);
  const out = { bench: 'server', engine: 'pouchdb-server 4.2 (LevelDB) behind the tokenpool front', cpus: os.cpus().length, date: new Date().toISOString(), reduce: results, single_doc_writes: writes };
  writeResults('server', out);
}

/** Single-document PUTs (create, then update) for a fixed time, sequential and 8 at a time, through the front and direct. */
async function updateRates(log: ReturnType<typeof createLogger>): Promise<Record<string, unknown>> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-writes-'));
  const server = await startEmbeddedServer({ port: 0, dataDir, log });
  try {
    const auth = server.admin;
    const engineUrl = `http://127.0.0.1:${await server.engine.enginePort()}`;
    await rawRequest(server.url, 'PUT', '/writes', { auth });
    const out: Record<string, unknown> = {};
    for (const [label, base] of [['front', server.url], ['engine_direct', engineUrl]] as const) {
      for (const concurrency of [1, 8]) {
        let n = 0;
        const deadline = performance.now() + 5000;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: concurrency }, async (_, w) => {
            let rev: string | undefined;
            const id = `${label}_${concurrency}_${w}`;
            while (performance.now() < deadline) {
              const r = await rawRequest(base, 'PUT', `/writes/${id}`, { auth, body: JSON.stringify({ _rev: rev, n }) });
              if (r.status !== 201) throw new Error(`write failed: ${r.status} ${r.body}`);
              rev = r.json().rev;
              n++;
            }
          }),
        );
        out[`${label}_concurrency_${concurrency}_per_s`] = Math.round(n / ((performance.now() - t0) / 1000));
      }
    }
    return out;
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
