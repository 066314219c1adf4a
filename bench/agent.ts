/**
 * The agent's footprint: time from process start to its first claim, and its resident memory
 * (peak, VmHWM) while a step runs, against the embedded server, for the two ways an agent runs:
 *  - cli:   `node dist/scripts/cli.js agent` (tokenpool agent from an installation)
 *  - pilot: jdl/pilot.sh with the self-contained bundle (built here), what batch systems run;
 *           its memory is that of the node process pilot.sh starts (with pilot.sh's node flags).
 * Runs alternate between the two, so that a busy machine slows both alike. Targets: < 1.5 s to
 * the first claim (median), <= 80 MB peak (largest of the runs). A second set of runs moves data
 * (a 50 MB tar input unpacked, the outputs packed and copied to a file:// results location), to show
 * what stage-in and stage-out add. A third set runs a step that writes 200 MB to stdout: the agent's
 * peak must stay within 10 % of the plain step's (the step writes its output files itself; nothing
 * passes through the agent). Writes bench-results/agent.json; its top-level run fields are the CLI
 * agent's plain step, as before the pilot was measured too.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { newToken } from '../server/token.js';
import * as tar from 'tar';
import { writeResults } from './results.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(ROOT, 'dist/scripts/cli.js');
const BUNDLE = path.join(ROOT, 'dist/tokenpool-agent.mjs');
const PILOT = path.join(ROOT, 'jdl/pilot.sh');
const RUNS = 5;
const STEP = 'sleep 1';
const DATA_RUNS = 3;
const DATA_MB = 50;
const DATA_STEP = 'cp -r "$INPUT_DIR"/. "$OUTPUT_DIR"/ && sleep 1';
const HUGE_RUNS = 3;
const HUGE_STEP = "yes 'LOFAR visibility record 0123456789' | head -c 200000000; sleep 1";
/** The agent's peak with 200 MB of stdout, against the plain step's median peak of the same variant. */
const TARGET_HUGE_RATIO = 1.1;
const TARGET_CLAIM_MS = 1500;
const TARGET_RSS_MB = 80;

interface Run {
  first_claim_ms: number;
  peak_rss_mb: number;
}

interface Variant {
  name: 'cli' | 'pilot';
  command: string;
  start(dbUrl: string, credentials: string, workdir: string, step: string): ChildProcess;
  /** The process whose memory is the agent's: the child itself, or the node that pilot.sh started. */
  agentPid(child: ChildProcess): number | null;
}

const agentArgs = (dbUrl: string, credentials: string, step: string) => ['--db', dbUrl, '--credentials', credentials, '--step', step, '--jitter', '0', '--max-tokens', '1'];

const VARIANTS: Variant[] = [
  {
    name: 'cli',
    command: 'node dist/scripts/cli.js agent',
    start: (dbUrl, credentials, workdir, step) =>
      spawn(process.execPath, [CLI, 'agent', ...agentArgs(dbUrl, credentials, step), '--workdir', workdir], {
        env: { ...process.env, TOKENPOOL_LOG_JSON: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    agentPid: (child) => child.pid ?? null,
  },
  {
    name: 'pilot',
    command: 'jdl/pilot.sh agent (node <pilot.sh flags> dist/tokenpool-agent.mjs agent)',
    // pilot.sh makes its own scratch directory, the agent's workdir, and removes it at the end.
    start: (dbUrl, credentials, workdir, step) =>
      spawn('/bin/sh', [PILOT, ...agentArgs(dbUrl, credentials, step)], {
        env: { ...process.env, TOKENPOOL_NODE: process.execPath, TOKENPOOL_BUNDLE: BUNDLE, TOKENPOOL_SCRATCH: workdir },
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    agentPid: (child) => nodeRunning(child.pid!, BUNDLE),
  },
];

function vmHwmKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) : 0;
}

/**
 * The child of `parent` that is node running `script`: pilot.sh also runs node -e to check its
 * version, and dirname/basename with the bundle's path to find it.
 */
function nodeRunning(parent: number, script: string): number | null {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== parent) continue;
      const args = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args[0] === process.execPath && args.includes(script)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

async function oneRun(v: Variant, dbUrl: string, credentials: string, workdir: string, step: string): Promise<Run> {
  fs.mkdirSync(workdir, { recursive: true });
  const started = Date.now();
  const child = v.start(dbUrl, credentials, workdir, step);
  let firstClaim = 0;
  let peakKb = 0;
  let agentPid: number | null = null;
  let buf = '';
  // VmHWM is the process's own high-water mark: sampling it now and then misses nothing but its end.
  const sampler = setInterval(() => {
    try {
      agentPid ??= v.agentPid(child);
      if (agentPid !== null) peakKb = Math.max(peakKb, vmHwmKb(agentPid));
    } catch {
      // exited
    }
  }, 50);
  child.stderr!.on('data', (c: Buffer) => {
    buf += c.toString();
    if (!firstClaim) {
      const line = buf.split('\n').find((l) => l.startsWith('{') && l.includes('"msg":"claimed"'));
      if (line) firstClaim = (JSON.parse(line) as { time: number }).time - started;
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  if (code !== 0 || !firstClaim || !peakKb) throw new Error(`${v.name} agent failed (exit ${code}, peak ${peakKb} kB): ${buf.slice(-2000)}`);
  return { first_claim_ms: firstClaim, peak_rss_mb: Math.round((peakKb / 1024) * 10) / 10 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function summary(runs: Run[]) {
  const firstClaim = median(runs.map((r) => r.first_claim_ms));
  const rssMax = Math.max(...runs.map((r) => r.peak_rss_mb));
  return {
    runs,
    first_claim_ms_median: firstClaim,
    peak_rss_mb_median: median(runs.map((r) => r.peak_rss_mb)),
    peak_rss_mb_max: rssMax,
    targets: {
      first_claim: { want: `< ${TARGET_CLAIM_MS} ms (median)`, got: firstClaim, met: firstClaim < TARGET_CLAIM_MS },
      rss: { want: `<= ${TARGET_RSS_MB} MB (largest peak of the runs)`, got: rssMax, met: rssMax <= TARGET_RSS_MB },
    },
  };
}

/** A tar of one file of random bytes (incompressible, like visibilities). */
async function makeInput(dir: string): Promise<string> {
  fs.mkdirSync(path.join(dir, 'in'), { recursive: true });
  const fd = fs.openSync(path.join(dir, 'in', 'vis.dat'), 'w');
  const mb = Buffer.alloc(1 << 20);
  for (let i = 0; i < DATA_MB; i++) fs.writeSync(fd, randomFillSync(mb));
  fs.closeSync(fd);
  const file = path.join(dir, 'input.tar');
  await tar.c({ file, cwd: path.join(dir, 'in') }, ['vis.dat']);
  fs.rmSync(path.join(dir, 'in'), { recursive: true });
  return file;
}

function buildBundle(): number {
  const res = spawnSync(process.execPath, [path.join(ROOT, 'jdl/bundle.mjs')], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`building the pilot bundle failed: ${res.stderr}`);
  return fs.statSync(BUNDLE).size;
}

async function main(): Promise<void> {
  const bundleBytes = buildBundle();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-agent-'));
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, log: createLogger('bench', { pretty: false, level: 'warn' }) });
  try {
    const dbUrl = `${server.url}/bench-agent`;
    const pool = openPool({ db: dbUrl, credentials: server.credentialsFile });
    await initDatabase(pool);
    const input = pathToFileURL(await makeInput(dataDir)).href;
    // The step sleeps so that the memory is sampled while the agent holds a lease, heartbeats and waits.
    const plain = Array.from({ length: RUNS * VARIANTS.length }, (_, i) => newToken({ obsid: 'L1', step: 'bench', subbands: [i], command: STEP }));
    const data = Array.from({ length: DATA_RUNS * VARIANTS.length }, (_, i) =>
      newToken({ obsid: 'L1', step: 'data', subbands: [i], command: DATA_STEP, input: [{ url: input }], results: `${pathToFileURL(dataDir).href}/results/\${TOKEN_ID}.tar` }),
    );
    const huge = Array.from({ length: HUGE_RUNS * VARIANTS.length }, (_, i) => newToken({ obsid: 'L1', step: 'huge', subbands: [i], command: HUGE_STEP }));
    await pool.db.bulk({ docs: [...plain, ...data, ...huge] });
    await pool.db.view('tokenpool', 'claimable', { limit: 1 });
    const runs: Record<Variant['name'], Run[]> = { cli: [], pilot: [] };
    const dataRuns: Record<Variant['name'], Run[]> = { cli: [], pilot: [] };
    for (let i = 0; i < RUNS; i++) {
      for (const v of VARIANTS) runs[v.name].push(await oneRun(v, dbUrl, server.credentialsFile, path.join(dataDir, `${v.name}${i}`), 'bench'));
    }
    for (let i = 0; i < DATA_RUNS; i++) {
      for (const v of VARIANTS) dataRuns[v.name].push(await oneRun(v, dbUrl, server.credentialsFile, path.join(dataDir, `${v.name}-data${i}`), 'data'));
    }
    const hugeRuns: Record<Variant['name'], Run[]> = { cli: [], pilot: [] };
    for (let i = 0; i < HUGE_RUNS; i++) {
      for (const v of VARIANTS) hugeRuns[v.name].push(await oneRun(v, dbUrl, server.credentialsFile, path.join(dataDir, `${v.name}-huge${i}`), 'huge'));
    }
    const hugeSummary = (name: Variant['name']) => {
      const plainPeak = median(runs[name].map((r) => r.peak_rss_mb));
      const peak = Math.max(...hugeRuns[name].map((r) => r.peak_rss_mb));
      const ratio = Math.round((peak / plainPeak) * 1000) / 1000;
      return {
        ...summary(hugeRuns[name]),
        plain_peak_rss_mb_median: plainPeak,
        huge_over_plain: { want: `<= ${TARGET_HUGE_RATIO} (largest peak over the plain step's median peak)`, got: ratio, met: ratio <= TARGET_HUGE_RATIO },
      };
    };
    const cli = summary(runs.cli);
    const result = {
      bench: 'agent',
      date: new Date().toISOString(),
      host: { cores: os.availableParallelism(), node: process.version, load: os.loadavg()[0] },
      step: STEP,
      // The CLI agent (as before the pilot was measured too):
      ...cli,
      cli: { command: VARIANTS[0]!.command, ...cli },
      pilot: { command: VARIANTS[1]!.command, bundle_bytes: bundleBytes, ...summary(runs.pilot) },
      data_step: {
        step: DATA_STEP,
        input: `${DATA_MB} MB tar (file://), unpacked; outputs packed and copied to a file:// results location`,
        cli: summary(dataRuns.cli),
        pilot: summary(dataRuns.pilot),
      },
      huge_output_step: {
        step: HUGE_STEP,
        stdout_bytes: 200_000_000,
        cli: hugeSummary('cli'),
        pilot: hugeSummary('pilot'),
      },
    };
    writeResults('agent', result);
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
