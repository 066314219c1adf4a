/**
 * `npm run bench:status`: how long `tokenpool status` (CLI end to end and its view queries) and the
 * dashboard's first paint (headless Chromium) take with 10k and 100k tokens, on each backend of
 * bench/backends.ts: the embedded server (dashboard on its front), and the real CouchDB single node
 * and cluster the environment names (dashboard served as `tokenpool dashboard` serves it).
 * Then agent throughput with 0 and 20 concurrent `tokenpool status --watch` processes (bench/watchers.ts).
 * Writes bench-results/status.json. Usage: npm run bench:status [-- 10000] [--only couchdb] [--url URL]
 * (BENCH_STATUS_PARTS=watchers runs only the watcher windows; =sizes only the sizes).
 */
import os from 'node:os';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Pool } from '../server/client.js';
import { dashboardRoutes, dashboardUrl, startRemoteDashboard } from '../server/dashboard/index.js';
import { readerFromPool, DESIGN, type PoolReader } from '../server/status/reader.js';
import { statusSummary } from '../server/status/summary.js';
import { pilotCountsFor } from '../server/status/pilots.js';
import { nowSeconds } from '../server/token.js';
import { finishOneRunning, seedPool } from '../test/helpers/status-fixture.js';
import { launchBrowser } from '../test/helpers/browser.js';
import { judgedTargets, onEachBackend, openBackends, parseBenchArgs, target, type Backend } from './backends.js';
import { writeResults } from './results.js';
import { watchersOn } from './watchers.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));

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

/** The dashboard of the pool: on the embedded server's front, else served here as `tokenpool dashboard` serves it. */
async function dashboard(b: Backend, pool: Pool): Promise<{ url: string; close: () => Promise<void> }> {
  if (b.embedded) return { url: dashboardUrl(b.embedded.url, pool.dbName), close: async () => undefined };
  return startRemoteDashboard(pool, { host: '127.0.0.1', port: 0 });
}

async function benchSize(b: Backend, tokens: number) {
  const dbUrl = await b.freshDb('status');
  try {
    const pool = b.pool(dbUrl);
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
    const cliStatus = await median(3, () => cli(['status', '--db', dbUrl, '--credentials', b.credentialsFile, '--json']));
    const cliStartup = await median(3, () => cli(['--version']));
    await finishOneRunning(pool, 'L200000', 'avg');
    const afterChange = (await timed(() => statusSummary(reader, {}))).ms;

    const page = await dashboard(b, pool);
    const browser = await launchBrowser();
    const paints: number[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const tab = await browser.context.newPage();
        const t0 = performance.now();
        await tab.goto(page.url);
        await tab.getByTestId('total').waitFor({ timeout: 600_000 });
        paints.push(Math.round(performance.now() - t0));
        await tab.close();
      }
    } finally {
      await browser.close();
      await page.close();
    }
    paints.sort((x, y) => x - y);
    return {
      tokens,
      load_average_1min: Math.round(os.loadavg()[0]! * 10) / 10,
      seed_bulk_docs_ms: seed.ms,
      first_status_with_index_build_ms: first.ms,
      queries_median_ms: queries,
      status_after_one_change_ms: afterChange,
      cli_status_json_end_to_end_median_ms: cliStatus,
      cli_startup_version_median_ms: cliStartup,
      dashboard_first_paint_median_ms: paints[1]!,
    };
  } finally {
    await b.dropDb(dbUrl);
  }
}

async function statusOn(b: Backend, sizes: number[], parts: Set<string>) {
  const watchers = parts.has('watchers') ? await watchersOn(b) : null;
  const results = [];
  for (const n of parts.has('sizes') ? sizes : []) {
    process.stderr.write(`bench:status: ${n} tokens …\n`);
    results.push(await benchSize(b, n));
  }
  const largest = results[results.length - 1];
  const of = `${largest?.tokens} tokens, median`;
  return {
    results,
    watchers,
    targets: {
      ...(largest && {
        cli_status_under_1s: target('< 1000 ms', largest.cli_status_json_end_to_end_median_ms, (x) => x < 1000, of),
        dashboard_first_paint_under_1s: target('< 1000 ms', largest.dashboard_first_paint_median_ms, (x) => x < 1000, of),
      }),
      ...(watchers && {
        twenty_watchers_cost_at_most_20_percent: target('≥ 0.8', watchers.ratio_watched_to_unwatched, (x) => x >= 0.8, 'agent tokens/s with 20 status --watch ÷ without'),
        ...(watchers.ratio_watched_via_dashboard_to_unwatched !== undefined && {
          twenty_watchers_via_dashboard_cost_at_most_20_percent: target('≥ 0.8', watchers.ratio_watched_via_dashboard_to_unwatched, (x) => x >= 0.8, 'the same, watchers reading one tokenpool dashboard'),
        }),
      }),
    },
  };
}

const args = parseBenchArgs();
const sizes = args.numbers.length ? args.numbers : [10_000, 100_000];
const backends = await openBackends(args, { embeddedRoutes: (admin) => dashboardRoutes({ credentials: admin }) });
const parts = new Set((process.env.BENCH_STATUS_PARTS ?? 'sizes,watchers').split(','));
const sections = await onEachBackend(backends, (b) => statusOn(b, sizes, parts));
writeResults('status', {
  bench: 'status',
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, node: process.version },
  notes: [
    'cli_status_json_end_to_end includes starting node and loading the CLI: cli_startup_version is that part alone (tokenpool --version)',
    'dashboard_first_paint: navigation until the totals are rendered, headless Chromium on the same machine; on the embedded server the dashboard is served by its front (stored reductions), on CouchDB by tokenpool dashboard\'s own server in this process',
    'first_status_with_index_build: the first query per view builds its index (once per pool)',
    'load_average_1min: the machine is shared; on a 2-core machine a load well above 2 stretches every figure',
    'targets are judged on the real single node (judged_on)',
    'watchers: real tokenpool agent processes (no-op step) in alternating windows without and with 20 tokenpool status --watch --json processes (started before the window); ratio = mean watched ÷ mean unwatched; watchers_cpu_s = CPU the watchers (and the dashboard process) used in the window. On the embedded server the watchers read the report it serves; on CouchDB once querying CouchDB each, once through one tokenpool dashboard process',
  ],
  backends: sections,
  targets: judgedTargets(sections),
});
