/**
 * Loading a pool, on each backend of bench/backends.ts (the embedded server, and the real CouchDB
 * single node and cluster the environment names). Per size N, from one SURL list (400 subbands per
 * observation):
 *   raw      the same N token documents as `tokens add` makes, written by plain sequential _bulk_docs
 *            of DEFAULT_CHUNK into a fresh database without design documents (no validation, no CLI);
 *   add      the real `tokenpool tokens add` into a pool set up by `db init` (no guard, the default);
 *   guarded  the same into a pool with the guard (initDatabase {guard: true}): what validation costs;
 * and on the `add` pool: the time until the first complete answer of the queries status and PiCaS
 * monitoring make (the first builds the index), `tokenpool status --json` end to end once indexed,
 * and the latency of the agent's Claimer.next() over a few hundred claims. `tokens add --dry-run`
 * (start-up plus reading and checking the list, no writes) tells where the CLI's time goes.
 * Usage: npm run bench:load [-- 10000 100000] [--only couchdb] [--url URL]
 *        npm run bench:load -- 1000000 --only couchdb      (the 1 M case: ~1.5 GB per pool in CouchDB)
 * Writes bench-results/load.json.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initDatabase } from '../server/setup.js';
import { MONITOR_DDOC, TOKENPOOL_DDOC } from '../server/design.js';
import { planFromSurlList } from '../server/tokens/plan.js';
import { DEFAULT_CHUNK } from '../server/tokens/write.js';
import { nowSeconds, type Token } from '../server/token.js';
import type { Claimant, Outcome } from '../server/lease.js';
import { Claimer } from '../agent/claim.js';
import { recordOutcome } from '../agent/attempt.js';
import { judgedTargets, onEachBackend, openBackends, parseBenchArgs, target, type Backend } from './backends.js';
import { writeResults } from './results.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));
const SUBBANDS_PER_OBSERVATION = 400;
const STEP = 'cal1';
const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 300);
/** Untimed claims first: the first query after the load may still find index work to do. */
const WARM_CLAIMS = 10;
const LOAD_LIMIT_S = 240;
const ONE_MILLION = 1_000_000;

interface QueryTiming {
  first_s: number;
  warm_s: number;
  rows: number;
}

function surlList(n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const obs = 600000 + Math.floor(i / SUBBANDS_PER_OBSERVATION);
    const sb = String(i % SUBBANDS_PER_OBSERVATION).padStart(3, '0');
    const hash = ((i * 2654435761) >>> 0).toString(16).padStart(8, '0');
    lines.push(`srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc9_001/${obs}/L${obs}_SB${sb}_uv.MS_${hash}.tar`);
  }
  return lines.join('\n') + '\n';
}

function cli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`tokenpool ${args[0]} exited ${code}: ${err}`))));
  });
}

async function seconds<T>(fn: () => Promise<T>): Promise<{ s: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { s: round((performance.now() - t0) / 1000), value };
}

/** `tokenpool tokens add` as a user runs it; the seconds it took. */
async function tokensAdd(b: Backend, dbUrl: string, file: string, n: number): Promise<number> {
  const { s, value } = await seconds(() => cli(['tokens', 'add', '--surls', file, '--step', STEP, '--allow-mixed', '--json', '--db', dbUrl, '--credentials', b.credentialsFile]));
  const created = (JSON.parse(value) as { created: number }).created;
  if (created !== n) throw new Error(`expected ${n} tokens created, got ${created}`);
  return s;
}

/** The documents `tokens add` writes for this list, written as plain _bulk_docs, one chunk after the other. */
async function rawBulk(b: Backend, docs: readonly Token[]): Promise<number> {
  const dbUrl = await b.freshDb('raw');
  const { db } = b.pool(dbUrl);
  const { s } = await seconds(async () => {
    for (let i = 0; i < docs.length; i += DEFAULT_CHUNK) {
      const rows = await db.bulk({ docs: docs.slice(i, i + DEFAULT_CHUNK) as Token[] });
      const failed = rows.find((r) => r.error);
      if (failed) throw new Error(`raw _bulk_docs refused ${failed.id}: ${failed.error}`);
    }
  });
  await b.dropDb(dbUrl);
  return s;
}

/** A view query without any client timeout: the first one waits for the index build. */
function query(url: string, authorization: string): Promise<{ rows: unknown[] }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { authorization, accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as { rows: unknown[] }) : reject(new Error(`HTTP ${res.statusCode}: ${body}`))));
    });
    req.on('error', reject);
  });
}

async function timedQuery(url: string, authorization: string): Promise<QueryTiming> {
  const first = await seconds(() => query(url, authorization));
  const warm = await seconds(() => query(url, authorization));
  return { first_s: first.s, warm_s: warm.s, rows: first.value.rows.length };
}

/** `tokenpool status --json` end to end: once (any index work left), then the median of three. */
async function statusCli(b: Backend, dbUrl: string): Promise<{ first_s: number; indexed_median_s: number }> {
  const run = () => cli(['status', '--json', '--db', dbUrl, '--credentials', b.credentialsFile]);
  const first = await seconds(run);
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push((await seconds(run)).s);
  return { first_s: first.s, indexed_median_s: median(times) };
}

const who: Claimant = { owner: 'bench:load', hostname: 'bench', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } };

/** One agent taking CLAIMS tokens one after the other (claim, then its outcome); each Claimer.next() timed. */
async function claimLatency(b: Backend, dbUrl: string) {
  const { db } = b.pool(dbUrl);
  const claimer = new Claimer({ db, who, leaseSeconds: 600, copies: b.copies });
  const times: number[] = [];
  for (let i = 0; i < WARM_CLAIMS + CLAIMS; i++) {
    const t0 = performance.now();
    const got = await claimer.next();
    if (i >= WARM_CLAIMS) times.push(performance.now() - t0);
    if (!got) throw new Error(`nothing claimable after ${i} claims`);
    const outcome: Outcome = { result: 'done', exitCode: 0, reason: 'done', end: nowSeconds(), phases: {} };
    await recordOutcome(db, got.token._id, got.claimId, outcome, { known: got.token, copies: b.copies });
  }
  times.sort((x, y) => x - y);
  const q = (p: number) => round(times[Math.min(times.length - 1, Math.floor(p * times.length))]!, 1);
  return { claims: CLAIMS, p50_ms: q(0.5), p90_ms: q(0.9), mean_ms: round(times.reduce((s, t) => s + t, 0) / times.length, 1), queries: claimer.stats.queries };
}

async function loadSize(b: Backend, n: number, dir: string) {
  const file = path.join(dir, `surls-${n}.txt`);
  fs.writeFileSync(file, surlList(n));
  const plan = planFromSurlList(fs.readFileSync(file, 'utf8'), { step: STEP }, { allowMixed: true });
  if (plan.tokens.length !== n) throw new Error(`the plan has ${plan.tokens.length} tokens, not ${n}`);
  const raw = await rawBulk(b, plan.tokens);
  const dryRun = (await seconds(() => cli(['tokens', 'add', '--surls', file, '--step', STEP, '--allow-mixed', '--json', '--dry-run']))).s;

  const guardedDb = await b.freshDb('guarded');
  await initDatabase(b.pool(guardedDb), { guard: true });
  const guarded = await tokensAdd(b, guardedDb, file, n);
  await b.dropDb(guardedDb);

  const dbUrl = await b.freshDb('load');
  const pool = b.pool(dbUrl);
  await initDatabase(pool);
  const add = await tokensAdd(b, dbUrl, file, n);
  const base = `${b.nodes[0]}/${encodeURIComponent(pool.dbName)}/_design`;
  const progress = await timedQuery(`${base}/${TOKENPOOL_DDOC}/_view/progress?group_level=3`, pool.authorization!);
  const overview = await timedQuery(`${base}/${MONITOR_DDOC}/_view/overview_total?group=true`, pool.authorization!);
  const status = await statusCli(b, dbUrl);
  const claims = await claimLatency(b, dbUrl);
  await b.dropDb(dbUrl);
  fs.rmSync(file);
  const result = {
    tokens: n,
    raw_bulk_docs_s: raw,
    raw_tokens_per_s: Math.round(n / raw),
    tokens_add_s: add,
    tokens_add_per_s: Math.round(n / add),
    tokens_add_vs_raw: round(raw / add),
    tokens_add_guarded_s: guarded,
    guarded_vs_raw: round(raw / guarded),
    guard_cost_s: round(guarded - add),
    tokens_add_dry_run_s: dryRun,
    status_progress_group_level_3: progress,
    picas_overview_total_group: overview,
    status_cli: status,
    claim_latency: claims,
  };
  process.stderr.write(`${JSON.stringify(result)}\n`);
  return result;
}

type SizeResult = Awaited<ReturnType<typeof loadSize>>;

async function loadOn(b: Backend, counts: number[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-load-'));
  const results: SizeResult[] = [];
  try {
    for (const n of counts) results.push(await loadSize(b, n, dir));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { results, targets: targets(results) };
}

function targets(results: SizeResult[]) {
  const largest = results[results.length - 1]!;
  const smallest = results[0]!;
  const million = results.find((r) => r.tokens >= ONE_MILLION);
  const latencyRatio = results.length > 1 ? round(largest.claim_latency.p50_ms / smallest.claim_latency.p50_ms) : null;
  return {
    tokens_add_vs_raw: target('>= 0.7', largest.tokens_add_vs_raw, (x) => x >= 0.7, `${largest.tokens} tokens: raw _bulk_docs seconds / tokens add seconds`),
    load_1m_s: target(`< ${LOAD_LIMIT_S}`, million?.tokens_add_s ?? null, (x) => x < LOAD_LIMIT_S, million ? `${million.tokens} tokens` : 'not run: give 1000000 as a size'),
    status_indexed_s: target('< 1', Math.max(...results.map((r) => r.status_cli.indexed_median_s)), (x) => x < 1, 'tokenpool status --json end to end, median of 3 once indexed, the slowest size'),
    claim_latency_ratio: target('<= 2', latencyRatio, (x) => x <= 2, `Claimer.next() p50 at ${largest.tokens} / at ${smallest.tokens} tokens`),
  };
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

function round(x: number, places = 3): number {
  return Math.round(x * 10 ** places) / 10 ** places;
}

const args = parseBenchArgs();
const counts = args.numbers.length ? args.numbers : [10_000, 100_000];
const backends = await openBackends(args);
const sections = await onEachBackend(backends, (b) => loadOn(b, counts));
writeResults('load', {
  bench: 'load',
  date: new Date().toISOString(),
  host: { cpus: os.cpus().length, node: process.version, load_average_1min: round(os.loadavg()[0]!, 1) },
  note: 'tokens_add_vs_raw = raw seconds / tokens add seconds (1 = as fast as plain _bulk_docs of the same documents); tokens add runs in a process of its own (start-up and reading, checking the list included: see tokens_add_dry_run_s). Targets judged on the real single node (judged_on); load_1m_s needs a run with 1000000.',
  backends: sections,
  targets: judgedTargets(sections),
});
