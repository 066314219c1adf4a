/**
 * The agent's footprint: time from process start to its first claim, and its resident memory
 * (peak, VmHWM) while a step runs, for a real `tokenpool agent` process against the embedded server.
 * Targets: < 1.5 s to the first claim, <= 80 MB. Writes bench-results/agent.json.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedServer } from '../server/embedded/index.js';
import { createLogger } from '../server/log.js';
import { openPool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { newToken } from '../server/token.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));
const RUNS = 5;

function vmKb(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return m ? Number(m[1]) : 0;
}

async function oneRun(dbUrl: string, credentials: string, workdir: string): Promise<{ first_claim_ms: number; peak_rss_mb: number }> {
  const started = Date.now();
  const child = spawn(process.execPath, [CLI, 'agent', '--db', dbUrl, '--credentials', credentials, '--jitter', '0', '--max-tokens', '1', '--workdir', workdir], {
    env: { ...process.env, TOKENPOOL_LOG_JSON: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let firstClaim = 0;
  let peakKb = 0;
  let buf = '';
  const sampler = setInterval(() => {
    try {
      peakKb = Math.max(peakKb, vmKb(child.pid!, 'VmHWM'));
    } catch {
      // exited
    }
  }, 100);
  child.stderr!.on('data', (c: Buffer) => {
    buf += c.toString();
    if (!firstClaim && buf.includes('"msg":"claimed"')) {
      const line = buf.split('\n').find((l) => l.includes('"msg":"claimed"'))!;
      firstClaim = (JSON.parse(line) as { time: number }).time - started;
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  if (code !== 0 || !firstClaim) throw new Error(`agent failed (exit ${code}): ${buf.slice(-2000)}`);
  return { first_claim_ms: firstClaim, peak_rss_mb: Math.round((peakKb / 1024) * 10) / 10 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-agent-'));
  const server = await startEmbeddedServer({ port: 0, dataDir, inMemory: false, log: createLogger('bench', { pretty: false, level: 'warn' }) });
  try {
    const dbUrl = `${server.url}/bench-agent`;
    const pool = openPool({ db: dbUrl, credentials: server.credentialsFile });
    await initDatabase(pool);
    // The step sleeps so that the memory is sampled while the agent holds a lease, heartbeats and waits.
    await pool.db.bulk({ docs: Array.from({ length: RUNS }, (_, i) => newToken({ obsid: 'L1', step: 'bench', subbands: [i], command: 'sleep 1' })) });
    await pool.db.view('tokenpool', 'claimable', { limit: 1 });
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await oneRun(dbUrl, server.credentialsFile, path.join(dataDir, `w${i}`)));
    const firstClaim = median(runs.map((r) => r.first_claim_ms));
    const rss = Math.max(...runs.map((r) => r.peak_rss_mb));
    const result = {
      bench: 'agent',
      date: new Date().toISOString(),
      host: { cores: os.availableParallelism(), node: process.version, load: os.loadavg()[0] },
      runs,
      first_claim_ms_median: firstClaim,
      peak_rss_mb_max: rss,
      targets: {
        first_claim: { want: '< 1500 ms', got: firstClaim, met: firstClaim < 1500 },
        rss: { want: '<= 80 MB', got: rss, met: rss <= 80 },
      },
    };
    fs.mkdirSync('bench-results', { recursive: true });
    fs.writeFileSync('bench-results/agent.json', JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
