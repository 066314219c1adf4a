/** A real `tokenpool status --watch --json` process, read as the reports it prints. */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './cli.js';
import type { StatusReport } from '../../server/status/report.js';

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
