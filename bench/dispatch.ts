/**
 * Dispatch throughput: how fast tokens go from todo to done with a no-op step when 1, 8, 32 and 64
 * claimers compete, next to (a) the server's raw single-document update rate and (b) a PiCaS-style
 * claimer (random row of the first 100 of the todo view, GET, PUT, up to 10 retries, no lease).
 * Claimers are in-process loops over the agent's own claim and finish functions, against the
 * embedded server over HTTP. Writes bench-results/dispatch.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool, type Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { newToken, nowSeconds, type Token } from '../server/token.js';
import { finish, updateToken, type Claimant } from '../server/lease.js';
import { Claimer } from '../agent/claim.js';
import { httpStatus } from '../server/db-errors.js';
import { writeResults } from './results.js';

const LEVELS = [1, 8, 32, 64];
const TOKENS = Number(process.env.BENCH_TOKENS ?? 1000);
/** A larger pool at 64 claimers: less of the run is the contested tail, where more claimers than tokens are left. */
const LARGE_TOKENS = Number(process.env.BENCH_LARGE_TOKENS ?? 2000);
const RAW_SECONDS = Number(process.env.BENCH_RAW_SECONDS ?? 4);
const RAW_DOCS_PER_LOOP = 20;
/** Side-by-side rounds at 64 claimers, whose median ratios are held against the targets */
const TARGET_ROUNDS = 3;

interface RunResult {
  claimers: number;
  tokens: number;
  seconds: number;
  tokens_per_s: number;
  conflicts_per_claim: number;
  claim_latency_ms: { p50: number; p99: number };
  view_queries: number;
  /** claim writes (won and lost) plus finish writes, per token */
  writes_per_token: number;
  done_exactly_once: boolean;
}

function who(i: number): Claimant {
  return { owner: `bench:${i}`, hostname: 'bench', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } };
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 10) / 10;
}

let dbCounter = 0;
async function poolWithTokens(server: { url: string; credentialsFile: string }, n: number): Promise<Pool> {
  const pool = openPool({ db: `${server.url}/bench-${++dbCounter}`, credentials: server.credentialsFile });
  await initDatabase(pool);
  const docs = Array.from({ length: n }, (_, i) => newToken({ obsid: 'L1', step: 'noop', subbands: [i], command: 'true' }));
  for (let i = 0; i < docs.length; i += 500) await pool.db.bulk({ docs: docs.slice(i, i + 500) });
  // Build the indexes before timing, as a pool that has been in use would have them (agents read with documents).
  await pool.db.view('tokenpool', 'claimable', { limit: 1, include_docs: true });
  await pool.db.view('tokenpool', 'leases', { limit: 1, include_docs: true });
  await pool.db.view('Monitor', 'todo', { limit: 1 });
  return pool;
}

async function verify(pool: Pool, n: number): Promise<boolean> {
  const res = await pool.db.list({ include_docs: true });
  const tokens = res.rows.map((r) => r.doc as Token).filter((d) => d?.type === 'token');
  return tokens.length === n && tokens.every((t) => t.status === 'done' && t.done > 0 && (t.history?.length ?? 1) <= 1);
}

/**
 * The server's raw single-document update rate: each loop updates documents of its own (same size,
 * same validate function as a claim) with the _rev it holds, as fast as it can; no reads, no views.
 * Each loop goes round its own RAW_DOCS_PER_LOOP documents, so that, as with tokens, a document is
 * updated a few times, not hundreds (a long revision history makes PouchDB's writes slower).
 */
async function rawUpdates(pool: Pool, concurrency: number, label: string): Promise<number> {
  const loops = await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      const docs = Array.from({ length: RAW_DOCS_PER_LOOP }, (_, k) => newToken({ obsid: 'L9', step: label, subbands: [i * RAW_DOCS_PER_LOOP + k], command: 'true', status: 'waiting' }));
      // By id: the engine's _bulk_docs answer does not always keep the order of the request.
      const revs = new Map((await pool.db.bulk({ docs })).map((r) => [r.id, r.rev!]));
      return docs.map((d) => ({ ...d, _rev: revs.get(d._id)! }));
    }),
  );
  let updates = 0;
  const until = Date.now() + RAW_SECONDS * 1000;
  const started = Date.now();
  await Promise.all(
    loops.map(async (docs) => {
      for (let k = 0; Date.now() < until; k = (k + 1) % docs.length) {
        const d = docs[k]!;
        const res = await pool.db.insert({ ...d, updated: d.updated + 1 });
        d._rev = res.rev;
        d.updated++;
        updates++;
      }
    }),
  );
  return Math.round((updates / ((Date.now() - started) / 1000)) * 10) / 10;
}

/**
 * The raw rate measured right before and right after the two claimers' runs, and their mean: the
 * engine's LevelDB compacts now and then, which can take a third off a few seconds' measurement.
 */
async function sideBySide(
  rawPool: Pool,
  label: string,
  claimers: number,
  tokenpoolRun: () => Promise<RunResult>,
  picasRun: () => Promise<RunResult>,
): Promise<{ raw: { raw_token_updates_per_s: number; raw_before_after: [number, number] }; tokenpool: RunResult; picas: RunResult }> {
  const before = await rawUpdates(rawPool, claimers, `${label}a`);
  const tokenpool = await tokenpoolRun();
  const picas = await picasRun();
  const after = await rawUpdates(rawPool, claimers, `${label}b`);
  return { raw: { raw_token_updates_per_s: Math.round(((before + after) / 2) * 10) / 10, raw_before_after: [before, after] }, tokenpool, picas };
}

async function tokenpoolRun(server: { url: string; credentialsFile: string }, claimers: number, fence: boolean, tokens = TOKENS): Promise<RunResult> {
  const pool = await poolWithTokens(server, tokens);
  const latencies: number[] = [];
  const instances = Array.from({ length: claimers }, (_, i) => new Claimer({ db: pool.db, who: who(i), leaseSeconds: 300, fence }));
  const started = Date.now();
  await Promise.all(
    instances.map(async (claimer) => {
      for (;;) {
        const t0 = performance.now();
        const got = await claimer.next();
        latencies.push(performance.now() - t0);
        if (!got) return;
        const now = nowSeconds();
        await updateToken(pool.db, got.token._id, (t) => finish(t, got.claimId, { result: 'done', exitCode: 0, reason: 'done', end: now, phases: {} }, now), { known: got.token });
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  const claims = instances.reduce((s, c) => s + c.stats.claims, 0);
  const conflicts = instances.reduce((s, c) => s + c.stats.conflicts, 0);
  const queries = instances.reduce((s, c) => s + c.stats.queries, 0);
  return runResult({ claimers, claims, conflicts, lostWrites: conflicts, queries, seconds, latencies, exactlyOnce: await verify(pool, tokens) });
}

/** PiCaS's claim: 100 rows of the todo view, a random one, GET, lock, PUT; on 409 start over, at most 10 times. */
async function picasRun(server: { url: string; credentialsFile: string }, claimers: number, tokens = TOKENS): Promise<RunResult> {
  const pool = await poolWithTokens(server, tokens);
  const latencies: number[] = [];
  let claims = 0;
  let conflicts = 0;
  let lostWrites = 0;
  let queries = 0;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: claimers }, async () => {
      for (;;) {
        const t0 = performance.now();
        let token: Token | null = null;
        for (let attempt = 0; attempt < 10 && !token; attempt++) {
          const res = await pool.db.view('Monitor', 'todo', { limit: 100 });
          queries++;
          if (res.rows.length === 0) break;
          const row = res.rows[Math.floor(Math.random() * res.rows.length)]!;
          const doc = (await pool.db.get(row.id)) as Token;
          if (doc.lock !== 0) {
            conflicts++; // taken between the view read and the GET
            continue;
          }
          const locked = { ...doc, lock: nowSeconds(), hostname: 'bench' };
          try {
            const w = await pool.db.insert(locked);
            token = { ...locked, _rev: w.rev };
          } catch (err) {
            if (httpStatus(err) !== 409) throw err;
            conflicts++;
            lostWrites++;
          }
        }
        latencies.push(performance.now() - t0);
        if (!token) return;
        claims++;
        await pool.db.insert({ ...token, done: nowSeconds(), exit_code: 0, status: 'done' as const });
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  return runResult({ claimers, claims, conflicts, lostWrites, queries, seconds, latencies, exactlyOnce: await verify(pool, tokens) });
}

/** One level's figures, the same way for both claimers; a token costs two writes plus every write lost to a 409. */
function runResult(r: { claimers: number; claims: number; conflicts: number; lostWrites: number; queries: number; seconds: number; latencies: number[]; exactlyOnce: boolean }): RunResult {
  const { seconds } = r;
  const latencies = [...r.latencies].sort((a, b) => a - b);
  return {
    claimers: r.claimers,
    tokens: r.claims,
    seconds,
    tokens_per_s: Math.round((r.claims / seconds) * 10) / 10,
    conflicts_per_claim: Math.round((r.conflicts / Math.max(1, r.claims)) * 1000) / 1000,
    claim_latency_ms: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) },
    view_queries: r.queries,
    writes_per_token: Math.round(((2 * r.claims + r.lostWrites) / Math.max(1, r.claims)) * 100) / 100,
    done_exactly_once: r.exactlyOnce,
  };
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-dispatch-'));
  const log = createLogger('bench', { pretty: false, level: 'warn' });
  // In this process: the claimers and the front share one core, and the engine (the bottleneck) has
  // the other to itself, as on a server that runs no claimers. In a process of its own the front
  // and the claimers would take turns with the engine on both cores.
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, log });
  try {
    const rawPool = openPool({ db: `${server.url}/bench-raw`, credentials: server.credentialsFile });
    await initDatabase(rawPool);
    const levels = [];
    for (const claimers of LEVELS) {
      const { raw, tokenpool, picas } = await sideBySide(rawPool, `raw${claimers}`, claimers, () => tokenpoolRun(server, claimers, false), () => picasRun(server, claimers));
      levels.push({ claimers, ...raw, tokenpool, picas_style: picas, tokenpool_vs_raw: Math.round((tokenpool.tokens_per_s / raw.raw_token_updates_per_s) * 1000) / 1000 });
      process.stderr.write(`${claimers} claimers: raw ${raw.raw_token_updates_per_s}/s, tokenpool ${tokenpool.tokens_per_s}/s, picas-style ${picas.tokens_per_s}/s\n`);
    }
    // The target's level twice more: one round on a noisy machine should not decide it.
    const top = levels[levels.length - 1]!;
    const rounds = [{ raw: top.raw_token_updates_per_s, tokenpool: top.tokenpool.tokens_per_s, picas_style: top.picas_style.tokens_per_s }];
    for (let round = 1; round < TARGET_ROUNDS; round++) {
      const r = await sideBySide(rawPool, `raw64r${round}`, 64, () => tokenpoolRun(server, 64, false), () => picasRun(server, 64));
      rounds.push({ raw: r.raw.raw_token_updates_per_s, tokenpool: r.tokenpool.tokens_per_s, picas_style: r.picas.tokens_per_s });
      process.stderr.write(`64 claimers, round ${round + 1}: raw ${r.raw.raw_token_updates_per_s}/s, tokenpool ${r.tokenpool.tokens_per_s}/s, picas-style ${r.picas.tokens_per_s}/s\n`);
    }
    const vsRaw = median(rounds.map((r) => r.tokenpool / r.raw));
    const vsPicas = median(rounds.map((r) => r.tokenpool / r.picas_style));
    const fenced = await tokenpoolRun(server, 64, true);
    const largeRun = await sideBySide(rawPool, 'rawlarge', 64, () => tokenpoolRun(server, 64, false, LARGE_TOKENS), () => picasRun(server, 64, LARGE_TOKENS));
    const largeRaw = largeRun.raw.raw_token_updates_per_s;
    const large = { tokens: LARGE_TOKENS, ...largeRun.raw, tokenpool: largeRun.tokenpool, picas_style: largeRun.picas };
    process.stderr.write(`64 claimers, ${LARGE_TOKENS} tokens: raw ${largeRaw}/s, tokenpool ${large.tokenpool.tokens_per_s}/s, picas-style ${large.picas_style.tokens_per_s}/s\n`);
    const result = {
      bench: 'dispatch',
      date: new Date().toISOString(),
      host: { cores: os.availableParallelism(), node: process.version },
      server: 'embedded (pouchdb-server engine in its own process, LevelDB), over HTTP on loopback; view queries answered by the front from its stored index',
      tokens_per_level: TOKENS,
      note: 'raw = PUTs of token documents with a known _rev (no reads, no views), each loop going round 20 documents of its own, measured before and after the claimers (raw_before_after) and averaged; a dispatched token costs at least two such writes (claim, finish), so tokens/s can reach at most about half the raw rate. Writes that lose a race are answered by the front (409) without reaching the engine.',
      levels,
      fenced_64: { ...fenced, note: 'with the read-back of each claim that a CouchDB cluster (n > 1) needs' },
      large_64: { ...large, tokenpool_vs_raw: Math.round((large.tokenpool.tokens_per_s / largeRaw) * 1000) / 1000, note: `64 claimers on ${LARGE_TOKENS} tokens: less of the run is the tail where more claimers than tokens are left` },
      rounds_at_64: rounds.map((r) => ({ ...r, tokenpool_vs_raw: Math.round((r.tokenpool / r.raw) * 1000) / 1000 })),
      targets: {
        tokenpool_vs_raw_at_64: { want: '>= 0.45', got: Math.round(vsRaw * 1000) / 1000, of: `median of ${TARGET_ROUNDS} side-by-side rounds`, met: vsRaw >= 0.45 },
        ahead_of_picas_at_64: { got: Math.round(vsPicas * 100) / 100, of: `median of ${TARGET_ROUNDS} side-by-side rounds`, met: vsPicas > 1 },
      },
    };
    writeResults('dispatch', result);
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
