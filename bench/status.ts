/**
 * `npm run bench:status`: how long `tokenpool status` (CLI end to end and its view queries) and the
 * dashboard's first paint (headless Chromium) take with 10k and 100k tokens on the embedded server.
 * Writes bench-results/status.json. Sizes can be given as arguments: node dist/bench/status.js 10000
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { loadOrCreateAdmin } from '../server/embedded/credentials.js';
import { createLogger } from '../server/log.js';
import { openPool, type Pool } from '../server/client.js';
import { dashboardRoutes, dashboardUrl } from '../server/dashboard/index.js';
import { readerFromPool, DESIGN, type PoolReader } from '../server/status/reader.js';
import { statusSummary } from '../server/status/summary.js';
import { pilotCountsFor } from '../server/status/pilots.js';
import { nowSeconds, type Token } from '../server/token.js';
import { seedPool } from '../test/helpers/status-fixture.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { writeResults } from './results.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));
const DB = 'bench';

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: Math.round(performance.now() - t0), value };
}

async function median(n: number, fn: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push((await timed(fn)).ms);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function cli(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`status failed: ${err}`))));
  });
}

async function finishOne(pool: Pool): Promise<void> {
  const rows = await pool.db.view('tokenpool', 'progress', { reduce: false, key: ['L200000', 'avg', 'running'], limit: 1, include_docs: true });
  const doc = rows.rows[0]!.doc as Token;
  const now = nowSeconds();
  await pool.db.insert({ ...doc, status: 'done', lock: now - 30, done: now, exit_code: 0, times: { ...doc.times, done: now } });
}

async function benchSize(tokens: number) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-status-'));
  const admin = loadOrCreateAdmin(dataDir).credentials;
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, routes: dashboardRoutes({ credentials: admin }), log: createLogger('bench', { level: 'warn' }) });
  try {
    const dbUrl = `${server.url}/${DB}`;
    const pool = openPool({ db: dbUrl, user: admin.name, password: admin.password });
    const obsids = ['L200000', 'L200001', 'L200002', 'L200003', 'L200004'];
    const steps = ['avg', 'cal'];
    const seed = await timed(() => seedPool(pool, { obsids, steps, perStep: tokens / (obsids.length * steps.length) }));
    const reader: PoolReader = readerFromPool(pool);
    const view = (name: string, q: Record<string, unknown>) => () => reader.view(DESIGN, name, q as never);

    // The first query of each view builds its index (once per pool, then kept up to date incrementally).
    const withPilots = { pilots: () => pilotCountsFor(pool) };
    const first = await timed(() => statusSummary(reader, {}, withPilots));
    const queries = {
      progress_group_level_3: await median(5, view('progress', { group_level: 3 })),
      done_timeline_last_6h: await median(5, view('done_timeline', { group_level: 3, startkey: [nowSeconds() - 6 * 3600], endkey: [{}] })),
      failures_group_level_4: await median(5, view('failures', { group_level: 4 })),
      failures_examples_reduce_false_limit_3: await median(5, view('failures', { reduce: false, key: ['L200000', 'avg', 'exit code 1', 1], limit: 3 })),
      status_summary_in_process: await median(5, () => statusSummary(reader, {})),
      status_summary_with_pilots_in_process: await median(5, () => statusSummary(reader, {}, withPilots)),
    };
    const cliStatus = await median(3, () => cli(['status', '--db', dbUrl, '--credentials', server.credentialsFile, '--json']));
    const cliStartup = await median(3, () => cli(['--version']));
    await finishOne(pool);
    const afterChange = (await timed(() => statusSummary(reader, {}))).ms;

    const browser = await launchBrowser();
    const paints: number[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const page = await browser.context.newPage();
        const t0 = performance.now();
        await page.goto(dashboardUrl(server.url, DB));
        await page.getByTestId('total').waitFor({ timeout: 600_000 });
        paints.push(Math.round(performance.now() - t0));
        await page.close();
      }
    } finally {
      await browser.close();
    }
    paints.sort((a, b) => a - b);
    return {
      tokens,
      load_average_1min: Math.round(os.loadavg()[0]! * 10) / 10,
      seed_bulk_docs_ms: seed.ms,
      first_status_with_index_build_ms: first.ms,
      queries_median_ms: queries,
      status_after_one_change_ms: afterChange,
      cli_status_json_end_to_end_median_ms: cliStatus,
      cli_startup_version_median_ms: cliStartup,
      dashboard_first_paint_median_ms: paints[1],
      target_1s_met: cliStatus < 1000 && paints[1]! < 1000,
    };
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
const results = [];
for (const n of sizes.length ? sizes : [10_000, 100_000]) {
  process.stderr.write(`bench:status: ${n} tokens …\n`);
  results.push(await benchSize(n));
}
const report = {
  bench: 'status',
  machine: { cpus: os.cpus().length, node: process.version },
  engine: 'embedded server (pouchdb-server, LevelDB on disk) with the front\'s stored reductions',
  notes: [
    'cli_status_json_end_to_end includes starting node and loading the CLI: cli_startup_version is that part alone (tokenpool --version)',
    'dashboard_first_paint: navigation until the totals are rendered, headless Chromium on the same machine',
    'first_status_with_index_build: the first query per view builds its index in the engine (once per pool)',
    'load_average_1min: the machine is shared; on a 2-core machine a load well above 2 stretches every figure',
  ],
  results,
};
writeResults('status', report);
