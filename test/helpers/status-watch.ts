/** A real `tokenpool status --watch --json` process, read as the reports it prints. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './cli.js';
import type { StatusReport } from '../../server/status/report.js';
import type { Pool } from '../../server/client.js';
import { finishOneRunning } from './status-fixture.js';

export interface StatusWatcher {
  /** the reports printed so far, once at least n are there */
  reports(n: number): Promise<StatusReport[]>;
  /** SIGINT, then the exit code */
  stop(): Promise<number | null>;
  stderr(): string;
}

export function watchStatus(args: string[], env: NodeJS.ProcessEnv): StatusWatcher {
  const child: ChildProcess = spawn(process.execPath, [...CLI, 'status', '--watch', '--json', ...args], {
    env: { ...process.env, ...env, TOKENPOOL_LOG_JSON: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  // --json --watch prints one pretty JSON document per update: they end with a "}" alone on a line.
  const parsed = () => out.split(/\n}\n/).slice(0, -1).map((d) => JSON.parse(`${d}\n}`) as StatusReport);
  return {
    reports: (n) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => (clearInterval(poll), reject(new Error(`no report #${n}; stderr: ${err}`))), 60_000);
        const poll = setInterval(() => {
          const got = parsed();
          if (got.length >= n) {
            clearTimeout(timer);
            clearInterval(poll);
            resolve(got);
          }
        }, 50);
      }),
    stop: () => (child.kill('SIGINT'), closed),
    stderr: () => err,
  };
}

/**
 * Runs a watcher, finishes one running token of obsid × step once it printed its first report, and
 * returns the done count before and the reports printed by the time a second one came; the watcher
 * must then stop on SIGINT with exit code 0.
 */
export async function watchOneFinish(args: string[], env: NodeJS.ProcessEnv, pool: Pool, obsid: string, step: string): Promise<{ before: number; reports: StatusReport[] }> {
  const watcher = watchStatus(args, env);
  try {
    const before = (await watcher.reports(1))[0]!.rows[0]!.counts.done ?? 0;
    // give the watcher time to open its feed or event stream from "now"
    await new Promise((r) => setTimeout(r, 1500));
    await finishOneRunning(pool, obsid, step);
    return { before, reports: await watcher.reports(2) };
  } finally {
    assert.equal(await watcher.stop(), 0, watcher.stderr());
  }
}
