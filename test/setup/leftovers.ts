/**
 * A safety net under every test's own cleanup: processes that tests started (agents, servers, Slurm
 * daemons, nginx, browsers) carry this run's mark in their environment; any still alive when the
 * run ends are named and killed, so a test that failed half-way never leaves a machine busy.
 */
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';

export const RUN_MARK = 'TEST_RUN_MARK';

/** Marks this process's environment; everything started after inherits the mark. */
export function markRun(): string {
  process.env[RUN_MARK] ??= randomUUID();
  return process.env[RUN_MARK];
}

function environOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'utf8');
  } catch {
    return '';
  }
}

function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 120);
  } catch {
    return '?';
  }
}

/** Kills every process but this one that carries the mark; returns what was left running. */
export function killLeftovers(mark: string): string[] {
  if (!fs.existsSync('/proc/self/environ')) return [];
  const needle = `${RUN_MARK}=${mark}\0`;
  const left: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid || pid === process.ppid) continue;
    if (!environOf(pid).includes(needle)) continue;
    left.push(`${pid} ${commandOf(pid)}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return left;
}
