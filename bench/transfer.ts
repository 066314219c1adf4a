/**
 * Transfer throughput on loopback against nginx (WebDAV): stage-in (GET) and stage-out (PUT) of a
 * 1 GiB file with the built-in client (adler32 computed on the way), gfal-copy and curl side by
 * side, and adler32 speed. Besides MB/s, the CPU seconds each contender spends per run: on a
 * shared machine wall-clock speed follows the CPU a process needs. Everything runs under the V8
 * settings the agent runs with (WebAssembly on the baseline compiler). Writes
 * bench-results/transfer.json. Big files are deleted afterwards.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { keepWebAssemblyOnBaselineCompiler } from '../agent/v8-settings.js';
import { startNginx } from '../test/helpers/nginx.js';
import { createTokenIssuer, mintJwt, mintMacaroon } from '../test/helpers/se-auth.js';
import { writeResults } from './results.js';

// As in the agent, the flag is set before the adler32 module is compiled (the agent loads it on
// first use): a module compiled earlier would still be optimized, and the figures would flatter.
keepWebAssemblyOnBaselineCompiler();
const { adler32File, adler32Update, adler32UpdatePortable, ADLER32_INITIAL } = await import('../agent/node/adler32.js');
const { httpTransfer } = await import('../agent/node/transfer/http.js');

const SIZE = Number(process.env.BENCH_TRANSFER_BYTES ?? 1 << 30);
const RUNS = Number(process.env.BENCH_TRANSFER_RUNS ?? 9);
/** Runs of each authorised transfer (macaroon, bearer token) */
const AUTH_RUNS = Number(process.env.BENCH_TRANSFER_AUTH_RUNS ?? 5);

function mbps(bytes: number, ms: number): number {
  return Math.round((bytes / 1e6 / (ms / 1000)) * 10) / 10;
}

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

type Result = { mb_s: number; runs_mb_s: number[]; cpu_s: number; runs_cpu_s: number[] } | null;
/** A contender: resolves with the CPU seconds of the child process it ran, or nothing (then this process's CPU counts). */
type Contender = ((run: number) => Promise<number | void> | number | void) | null;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Runs the contenders in turns (a, b, c, b, c, a, c, a, b, …) so that changing load on a shared
 * machine hits them alike and none is always first (the bench's first transfer was often slow);
 * reports the best run of each and the median CPU seconds.
 */
async function compare(contenders: Record<string, Contender>, before?: () => void, rounds = RUNS): Promise<Record<string, Result>> {
  const runs: Record<string, number[]> = {};
  const cpu: Record<string, number[]> = {};
  const entries = Object.entries(contenders);
  for (let i = 0; i < rounds; i++) {
    for (const [name, fn] of [...entries.slice(i % entries.length), ...entries.slice(0, i % entries.length)]) {
      if (!fn) continue;
      before?.();
      const own = process.cpuUsage();
      let child: number | void = undefined;
      const ms = await timed(async () => (child = await fn(i)));
      const used = process.cpuUsage(own);
      (runs[name] ??= []).push(mbps(SIZE, ms));
      (cpu[name] ??= []).push(Math.round((typeof child === 'number' ? child : (used.user + used.system) / 1e6) * 100) / 100);
    }
  }
  return Object.fromEntries(
    Object.keys(contenders).map((name) => [name, runs[name] ? { mb_s: Math.max(...runs[name]!), runs_mb_s: runs[name]!, cpu_s: median(cpu[name]!), runs_cpu_s: cpu[name]! } : null]),
  );
}

/** Runs a tool to completion; returns the CPU seconds (user + system) it used, from bash's `times`. */
function runTool(tool: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const out = execFileSync('bash', ['-c', '"$@" >/dev/null 2>&1 || exit $?; times', 'bash', tool, ...args], { env }).toString();
  const children = out.trim().split('\n')[1] ?? '';
  return [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + Number(m[1]) * 60 + Number(m[2]), 0);
}

const have = (tool: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

const nginx = await startNginx();
// The same SE checking macaroons and WLCG tokens on every request (njs), for the authorised runs.
const issuer = createTokenIssuer();
const keys = { macaroonSecret: randomBytes(16).toString('hex'), jwks: issuer.jwks };
const secured = await startNginx({ auth: keys });
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bench-transfer-'));
const gfalEnv = { ...process.env, GFAL_PYTHONBIN: process.env.GFAL_PYTHONBIN ?? '/usr/bin/python3' };
try {
  // Incompressible content, written in 16 MiB blocks.
  const source = path.join(nginx.root, 'big.dat');
  const block = randomBytes(16 << 20);
  const fd = fs.openSync(source, 'w');
  for (let written = 0; written < SIZE; written += block.length) fs.writeSync(fd, block, 0, Math.min(block.length, SIZE - written));
  fs.closeSync(fd);
  const local = path.join(work, 'local.dat');
  fs.copyFileSync(source, local);
  // Written out now: otherwise the first runs share the disk with writing back 2 GiB (the first
  // contender of the first turn measured at a third of its speed).
  for (const file of [source, local]) {
    const written = fs.openSync(file, 'r+');
    fs.fsyncSync(written);
    fs.closeSync(written);
  }
  const url = `${nginx.url}/big.dat`;
  const dest = path.join(work, 'in.dat');
  const signal = new AbortController().signal;
  const http = httpTransfer();
  const clear = () => fs.rmSync(dest, { force: true });

  // adler32: in memory (the pure computation) and over the file (with reads from the page cache).
  const mem = Buffer.alloc(256 << 20);
  for (let i = 0; i < mem.length; i += block.length) block.copy(mem, i);
  let sum = ADLER32_INITIAL;
  sum = adler32Update(ADLER32_INITIAL, mem); // warm-up: optimised code
  const cpu = process.cpuUsage();
  const memMs = await timed(() => {
    for (let r = 0; r < 4; r++) sum = adler32Update(ADLER32_INITIAL, mem);
  });
  const cpuUsed = process.cpuUsage(cpu);
  const cpuMs = (cpuUsed.user + cpuUsed.system) / 1000;
  adler32UpdatePortable(ADLER32_INITIAL, mem);
  const portableMs = await timed(() => adler32UpdatePortable(ADLER32_INITIAL, mem));
  const fileSum = await adler32File(local);
  const fileMs = await timed(() => adler32File(local));
  const reference = execFileSync('python3', ['-c', 'import sys, zlib\nv=1\nwith open(sys.argv[1], "rb") as f:\n  for b in iter(lambda: f.read(1<<24), b""): v = zlib.adler32(b, v)\nprint("%08x" % v)', local]).toString().trim();

  const stageIn = await compare(
    {
      builtin: async () => void (await http.download(url, dest, { signal })),
      curl: have('curl') ? () => runTool('curl', ['-sSf', '-o', dest, url]) : null,
      gfal_copy: have('gfal-copy') ? () => runTool('gfal-copy', ['-f', url, `file://${dest}`], gfalEnv) : null,
    },
    clear,
  );
  clear();
  const builtinIn = await http.download(url, dest, { signal });
  clear();

  const put = (name: string, i: number) => `${nginx.url}/out/${name}-${i}.dat`;
  const outDir = path.join(nginx.root, 'out');
  const stageOut = await compare(
    {
      builtin: async (i) => void (await http.upload(local, put('builtin', i), { signal })),
      curl: have('curl') ? (i) => runTool('curl', ['-sSf', '-T', local, put('curl', i)]) : null,
      gfal_copy: have('gfal-copy') ? (i) => runTool('gfal-copy', ['-f', `file://${local}`, put('gfal', i)], gfalEnv) : null,
    },
    // Uploaded copies go at once: several GiB of them would only fill the disk.
    () => fs.rmSync(outDir, { recursive: true, force: true }),
  );

  // Authorised stage-in and stage-out: the built-in client and curl with the same credential
  // (curl reads the header from a 0600 file: a credential never goes on a command line).
  fs.linkSync(source, path.join(secured.root, 'big.dat'));
  const securedOut = path.join(secured.root, 'out');
  const credentials = {
    macaroon: mintMacaroon(keys.macaroonSecret, { caveats: ['activity:DOWNLOAD,UPLOAD,LIST', `before:${new Date(Date.now() + 86400e3).toISOString()}`] }),
    bearer: mintJwt(issuer, { scope: 'storage.read:/ storage.create:/', lifetimeS: 86400 }),
  };
  const authorised: Record<string, { stage_in: Record<string, Result>; stage_out: Record<string, Result> }> = {};
  for (const [kind, secret] of Object.entries(credentials)) {
    const header = path.join(work, `${kind}.header`);
    fs.writeFileSync(header, `Authorization: Bearer ${secret}\n`, { mode: 0o600 });
    const client = httpTransfer(undefined, () => ({ Authorization: `Bearer ${secret}` }));
    const from = `${secured.url}/big.dat`;
    const to = (name: string, i: number) => `${secured.url}/out/${kind}-${name}-${i}.dat`;
    authorised[kind] = {
      stage_in: await compare({ builtin: async () => void (await client.download(from, dest, { signal })), curl: have('curl') ? () => runTool('curl', ['-sSf', '-H', `@${header}`, '-o', dest, from]) : null }, clear, AUTH_RUNS),
      stage_out: await compare(
        { builtin: async (i) => void (await client.upload(local, to('builtin', i), { signal })), curl: have('curl') ? (i) => runTool('curl', ['-sSf', '-H', `@${header}`, '-T', local, to('curl', i)]) : null },
        () => fs.rmSync(securedOut, { recursive: true, force: true }),
        AUTH_RUNS,
      ),
    };
  }
  clear();

  const ratio = (a: Result | undefined, b: Result | undefined) => (a && b ? Math.round((a.mb_s / b.mb_s) * 100) / 100 : null);
  /** Each turn's built-in run over that turn's curl run: the side-by-side view of the same minutes */
  const turnRatios = (a: Result | undefined, b: Result | undefined) => (a && b ? a.runs_mb_s.map((x, i) => Math.round((x / b.runs_mb_s[i]!) * 100) / 100) : null);
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  /** Median run over median run: one slow or fast outlier on either side does not decide it */
  const medianRatio = (a: Result | undefined, b: Result | undefined) => (a && b ? Math.round((median(a.runs_mb_s) / median(b.runs_mb_s)) * 100) / 100 : null);
  const cpuRatio = (a: Result | undefined, b: Result | undefined) => (a && b && b.cpu_s > 0 ? Math.round((a.cpu_s / b.cpu_s) * 100) / 100 : null);
  const result = {
    bench: 'transfer',
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
    v8_flags: '--liftoff-only (as the agent sets it)',
    file_bytes: SIZE,
    adler32: {
      memory_mb_s: mbps(4 * mem.length, memMs),
      /** per CPU second: what the code does when it has a core (the machine may be shared) */
      memory_mb_per_cpu_s: mbps(4 * mem.length, cpuMs),
      file_mb_s: mbps(SIZE, fileMs),
      /** the JavaScript fallback, where WebAssembly SIMD is missing */
      portable_memory_mb_s: mbps(mem.length, portableMs),
      matches_python_zlib: fileSum.adler32 === reference && builtinIn.adler32 === reference,
      value: fileSum.adler32,
      memory_value: sum.toString(16),
    },
    stage_in: stageIn,
    stage_out: stageOut,
    /** best run over best run */
    builtin_vs_curl: { stage_in: ratio(stageIn.builtin, stageIn.curl), stage_out: ratio(stageOut.builtin, stageOut.curl) },
    builtin_vs_curl_median: { stage_in: medianRatio(stageIn.builtin, stageIn.curl), stage_out: medianRatio(stageOut.builtin, stageOut.curl) },
    builtin_vs_curl_per_turn: { stage_in: turnRatios(stageIn.builtin, stageIn.curl), stage_out: turnRatios(stageOut.builtin, stageOut.curl) },
    /** CPU seconds per run, built-in over curl (median runs): below 1 the built-in client needs less */
    builtin_vs_curl_cpu: { stage_in: cpuRatio(stageIn.builtin, stageIn.curl), stage_out: cpuRatio(stageOut.builtin, stageOut.curl) },
    /** The same transfers against the SE that checks a macaroon or a WLCG bearer token on every request */
    authorised: Object.fromEntries(
      Object.entries(authorised).map(([kind, r]) => [
        kind,
        { ...r, builtin_vs_curl_median: { stage_in: medianRatio(r.stage_in.builtin, r.stage_in.curl), stage_out: medianRatio(r.stage_out.builtin, r.stage_out.curl) } },
      ]),
    ),
    load_average: os.loadavg().map((l) => Math.round(l * 10) / 10),
    targets: { builtin_vs_curl: 0.8, adler32_mb_s: 1000 },
  };
  writeResults('transfer', result);
} finally {
  await secured.close();
  await nginx.close();
  fs.rmSync(work, { recursive: true, force: true });
}
