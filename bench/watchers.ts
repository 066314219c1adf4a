/**
 * What status watchers cost the agents: agent throughput (tokens done per second by real `tokenpool
 * agent` processes running a no-op step) with no watcher, with 20 concurrent `tokenpool status --watch`
 * processes, and with none again; the ratio compares the watched window with the mean of the two
 * unwatched ones, measured side by side in one run (issue #15: target ≥ 0.8 on the embedded server).
 * The embedded server serves the status report itself; on CouchDB the watchers are measured twice:
 * querying CouchDB each, and reading one `tokenpool dashboard` process (`status --dashboard`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initDatabase } from '../server/setup.js';
import { newToken } from '../server/token.js';
import type { Backend } from './backends.js';

const CLI = fileURLToPath(new URL('../scripts/cli.js', import.meta.url));

export interface WatcherSettings {
  watchers: number;
  agents: number;
  slots: number;
  windowS: number;
  /** watched windows, each followed by an unwatched one */
  rounds: number;
}

export const WATCHER_DEFAULTS: WatcherSettings = { watchers: 20, agents: 2, slots: 4, windowS: 20, rounds: 2 };

function start(args: string[], onOutput?: (text: string) => void): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  child.stdout!.on('data', (c: Buffer) => onOutput?.(c.toString()));
  return child;
}

/** How the watchers read the pool: as they find it (the embedded server serves the report), or through one dashboard process. */
type Via = 'direct' | 'dashboard';

/** A `tokenpool dashboard` process for the pool; resolves with the address status --dashboard takes. */
async function startDashboard(auth: string[], children: ChildProcess[]): Promise<string> {
  let out = '';
  children.push(start(['dashboard', ...auth, '--port', '0', '--json'], (t) => (out += t)));
  for (let i = 0; i < 300 && !/\n}\s*$/.test(out); i++) await sleep(100);
  return new URL((JSON.parse(out) as { url: string }).url).origin;
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
          setTimeout(() => c.kill('SIGKILL'), 15_000).unref();
        }),
    ),
  );
}

/** CPU seconds (user + system) the processes used so far, from /proc (Linux). */
function cpuSeconds(children: ChildProcess[]): number {
  const tick = 100; // USER_HZ: the unit of utime and stime in /proc/<pid>/stat on Linux
  let total = 0;
  for (const c of children) {
    try {
      const fields = fs.readFileSync(`/proc/${c.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      // the process has ended: it adds nothing more
    }
  }
  return total;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Tokens done per second over one window, with `watchers` status processes following the pool. */
async function window(b: Backend, s: WatcherSettings, watchers: number, workdir: string, via: Via = 'direct') {
  const dbUrl = await b.freshDb('watch');
  const pool = b.pool(dbUrl);
  const children: ChildProcess[] = [];
  try {
    await initDatabase(pool, { guard: false });
    // More than the agents can finish in the window, so that they never run dry.
    const tokens = Array.from({ length: 6000 }, (_, i) => newToken({ obsid: 'L400000', step: 'noop', subbands: [i], command: 'true' }));
    for (let i = 0; i < tokens.length; i += 1000) await pool.db.bulk({ docs: tokens.slice(i, i + 1000) });
    const auth = ['--db', dbUrl, '--credentials', b.credentialsFile];
    const through = watchers > 0 && via === 'dashboard' ? ['--dashboard', await startDashboard(auth, children)] : [];
    let drawn = 0;
    for (let i = 0; i < watchers; i++) children.push(start(['status', '--watch', '--json', ...auth, ...through], () => drawn++));
    // Watchers start before the window: their start-up (node, the CLI) is not what is measured.
    while (drawn < watchers) await sleep(200);
    for (let i = 0; i < s.agents; i++) {
      children.push(start(['agent', ...auth, '--slots', String(s.slots), '--jitter', '0', '--poll', '1', '--runtime', 'none', '--log-level', 'warn', '--workdir', path.join(workdir, `w${watchers}-${i}`)]));
    }
    const done = async () => ((await pool.db.view('tokenpool', 'progress', { group_level: 3 })).rows as unknown as { key: unknown[]; value: number }[])
      .filter((r) => r.key[2] === 'done')
      .reduce((n, r) => n + r.value, 0);
    // The agents' own start-up is left out as well: the window opens with their first results.
    while ((await done()) === 0) await sleep(500);
    const monitors = children.slice(0, children.length - s.agents);
    const d0 = await done();
    const c0 = cpuSeconds(monitors);
    const t0 = performance.now();
    await sleep(s.windowS * 1000);
    const d1 = await done();
    const monitorCpu = cpuSeconds(monitors) - c0;
    const seconds = (performance.now() - t0) / 1000;
    return { watchers, ...(watchers > 0 && { via: via === 'dashboard' ? 'one tokenpool dashboard process (status --dashboard)' : b.embedded ? 'the report tokenpool server serves' : 'each watcher querying CouchDB' }), tokens_done: d1 - d0, tokens_per_s: Math.round(((d1 - d0) / seconds) * 10) / 10, ...(watchers > 0 && { watchers_cpu_s: Math.round(monitorCpu * 100) / 100 }), load_average_1min: Math.round(os.loadavg()[0]! * 10) / 10 };
  } finally {
    await stopAll(children);
    await b.dropDb(dbUrl);
  }
}

export async function watchersOn(b: Backend, s: WatcherSettings = WATCHER_DEFAULTS) {
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-watch-'));
  try {
    // Watched and unwatched windows alternate, so that a drift in the machine's load falls on both.
    process.stderr.write(`bench:status: agents with 0 and ${s.watchers} status watchers, alternating, ${s.rounds} rounds …\n`);
    const unwatched = [await window(b, s, 0, workdir)];
    const watched = [];
    const viaDashboard = [];
    for (let r = 0; r < s.rounds; r++) {
      watched.push(await window(b, s, s.watchers, workdir));
      if (!b.embedded) viaDashboard.push(await window(b, s, s.watchers, workdir, 'dashboard'));
      unwatched.push(await window(b, s, 0, workdir));
    }
    const mean = (ws: { tokens_per_s: number }[]) => ws.reduce((n, w) => n + w.tokens_per_s, 0) / ws.length;
    const ratio = (ws: { tokens_per_s: number }[]) => (mean(unwatched) > 0 ? Math.round((mean(ws) / mean(unwatched)) * 100) / 100 : null);
    return {
      settings: { ...s, step: 'true (no-op)', watcher: 'tokenpool status --watch --json' },
      windows: [...unwatched, ...watched, ...viaDashboard],
      ratio_watched_to_unwatched: ratio(watched),
      ...(viaDashboard.length && { ratio_watched_via_dashboard_to_unwatched: ratio(viaDashboard) }),
    };
  } finally {
    fs.rmSync(workdir, { recursive: true, force: true });
  }
}
