/**
 * Loading a pool: an embedded server on LevelDB in a temporary directory, N tokens created through
 * the real `tokenpool tokens add` (a SURL list, 400 subbands per observation), then the time until
 * the first complete answer of the queries status and PiCaS monitoring make: the `progress` view
 * grouped at group_level=3 and `Monitor/overview_total` with group=true (the first query builds
 * the index, so it measures what a user waits for right after a load), and a second, warm query.
 * Usage: npm run bench:load [-- 10000 100000]   Writes bench-results/load.json.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { MONITOR_DDOC, TOKENPOOL_DDOC } from '../server/design.js';
import { writeResults } from './results.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));
const SUBBANDS_PER_OBSERVATION = 400;

interface QueryTiming {
  first_s: number;
  warm_s: number;
  rows: number;
}

interface LoadResult {
  tokens: number;
  load_s: number;
  tokens_per_s: number;
  status_progress_group_level_3: QueryTiming;
  picas_overview_total_group: QueryTiming;
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

function runAdd(file: string, dbUrl: string, credentialsFile: string): Promise<{ created: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'tokens', 'add', '--surls', file, '--step', 'cal1', '--allow-mixed', '--json', '--db', dbUrl, '--credentials', credentialsFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as { created: number }) : reject(new Error(`tokens add exited ${code}: ${err}`))));
  });
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

async function timed(url: string, authorization: string): Promise<QueryTiming> {
  let t = performance.now();
  const first = await query(url, authorization);
  const first_s = (performance.now() - t) / 1000;
  t = performance.now();
  await query(url, authorization);
  return { first_s: round(first_s), warm_s: round((performance.now() - t) / 1000), rows: first.rows.length };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  const counts = sizes.length ? sizes : [10_000, 100_000];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-load-'));
  const log = createLogger('bench', { pretty: false, level: 'warn' });
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, log });
  const results: LoadResult[] = [];
  try {
    for (const n of counts) {
      const dbUrl = `${server.url}/load-${n}`;
      const pool = openPool({ db: dbUrl, credentials: server.credentialsFile });
      await initDatabase(pool);
      const file = path.join(dataDir, `surls-${n}.txt`);
      fs.writeFileSync(file, surlList(n));
      const t0 = performance.now();
      const added = await runAdd(file, dbUrl, server.credentialsFile);
      const load_s = (performance.now() - t0) / 1000;
      if (added.created !== n) throw new Error(`expected ${n} tokens created, got ${added.created}`);
      const base = `${server.url}/${encodeURIComponent(pool.dbName)}/_design`;
      const status = await timed(`${base}/${TOKENPOOL_DDOC}/_view/progress?group_level=3`, pool.authorization!);
      const overview = await timed(`${base}/${MONITOR_DDOC}/_view/overview_total?group=true`, pool.authorization!);
      const result: LoadResult = {
        tokens: n,
        load_s: round(load_s),
        tokens_per_s: Math.round(n / load_s),
        status_progress_group_level_3: status,
        picas_overview_total_group: overview,
      };
      process.stderr.write(`${JSON.stringify(result)}\n`);
      results.push(result);
    }
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  const report = {
    bench: 'load',
    engine: 'embedded (pouchdb-server, LevelDB)',
    host: { cpus: os.cpus().length, node: process.version },
    date: new Date().toISOString(),
    results,
  };
  writeResults('load', report);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`);
  process.exitCode = 1;
});
