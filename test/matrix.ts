/**
 * `npm test`: the whole suite on the embedded server, then every file that talks to a pool again on
 * each real Apache CouchDB the environment names: COUCHDB_URL (a single node) and COUCHDB_CLUSTER_URLS
 * (a cluster), as the CouchDB test kit's start scripts print them. Without them the embedded run is
 * the whole suite. TEST_BACKENDS (e.g. "cluster") narrows the runs; arguments narrow the files.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BACKENDS, type BackendKind } from './helpers/server.js';

const DIR = path.dirname(fileURLToPath(import.meta.url));

/** Files that test the embedded server itself or touch no pool: run once, on the embedded backend. */
const EMBEDDED_ONLY = [
  /^server-/,
  /^db-validate\./,
  /^demo-run\./,
  /^dashboard-browser\./,
  /^node-(adler32|image|proxy|transfer|transfer-get)\./,
  /^submit-parsing\./,
];

function available(): BackendKind[] {
  const given: Record<BackendKind, boolean> = {
    embedded: true,
    couchdb: !!process.env.COUCHDB_URL,
    cluster: !!process.env.COUCHDB_CLUSTER_URLS,
  };
  const wanted = process.env.TEST_BACKENDS?.split(/[\s,]+/).filter(Boolean);
  for (const w of wanted ?? []) {
    if (!(BACKENDS as readonly string[]).includes(w)) throw new Error(`TEST_BACKENDS: unknown backend ${w} (one of ${BACKENDS.join(', ')})`);
    if (!given[w as BackendKind]) throw new Error(`TEST_BACKENDS asks for ${w}, but ${w === 'couchdb' ? 'COUCHDB_URL' : 'COUCHDB_CLUSTER_URLS'} is not set`);
  }
  return BACKENDS.filter((b) => given[b] && (!wanted || wanted.includes(b)));
}

function testFiles(backend: BackendKind, only: string[]): string[] {
  const all = fs.readdirSync(DIR).filter((f) => f.endsWith('.test.js')).sort();
  const chosen = only.length ? all.filter((f) => only.some((o) => f.startsWith(path.basename(o).replace(/\.(test\.)?[jt]s$/, '')))) : all;
  return chosen.filter((f) => backend === 'embedded' || !EMBEDDED_ONLY.some((re) => re.test(f))).map((f) => path.join(DIR, f));
}

function runNodeTest(backend: BackendKind, files: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...files], {
      env: { ...process.env, TEST_BACKEND: backend },
      stdio: 'inherit',
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

let backends: BackendKind[];
try {
  backends = available();
} catch (err) {
  console.error(`error: ${(err as Error).message}`);
  process.exit(2);
}
const missing = BACKENDS.filter((b) => !backends.includes(b));
if (missing.length && !process.env.TEST_BACKENDS) {
  console.log(`# not tested on: ${missing.join(', ')} (set COUCHDB_URL / COUCHDB_CLUSTER_URLS: see docs/server.md, "Running the test matrix")`);
}
const results: { backend: BackendKind; code: number; seconds: number; files: number }[] = [];
for (const backend of backends) {
  const files = testFiles(backend, process.argv.slice(2));
  if (files.length === 0) continue;
  console.log(`# backend ${backend}: ${files.length} files`);
  const started = Date.now();
  const code = await runNodeTest(backend, files);
  results.push({ backend, code, seconds: Math.round((Date.now() - started) / 1000), files: files.length });
}
for (const r of results) console.log(`# ${r.backend}: ${r.code === 0 ? 'passed' : 'FAILED'} (${r.files} files, ${r.seconds} s)`);
process.exit(results.some((r) => r.code !== 0) ? 1 : 0);
