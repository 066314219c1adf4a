/**
 * Everything a step starts, found again so that all of it can be stopped. A process group is not
 * enough: a child that calls setsid (or double-forks into its own session) leaves the step's group,
 * keeps running after a time limit or a SIGTERM, and holds the step's files open. Two nets, used
 * together:
 *  - a cgroup v2 of the step's own, where the agent may create one (root, or a delegated subtree):
 *    the step enters it before it runs anything, and nothing it starts can leave it;
 *  - everywhere else, a marker in the environment (`TOKENPOOL_STEP_MARK`), which every descendant
 *    inherits whatever session or group it moves to; /proc is searched for it, together with the
 *    step's process group. Only a descendant that replaces its whole environment escapes this net.
 * Zombies are skipped: on a node whose PID 1 does not reap (containers), they never go away.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const STEP_MARK = 'TOKENPOOL_STEP_MARK';
/** Rounds of SIGKILL while a step's processes keep forking. */
const KILL_ROUNDS = 50;
const KILL_ROUND_MS = 20;

export class StepContainment {
  private pgid: number | undefined;
  readonly mark = `${STEP_MARK}=${randomBytes(8).toString('hex')}`;

  private constructor(
    /** the step's cgroup directory, when this node lets the agent make one */
    readonly cgroup: string | null,
  ) {}

  static create(cgroups: boolean): StepContainment {
    const parent = cgroups ? cgroupParent() : null;
    if (!parent) return new StepContainment(null);
    const dir = path.join(parent, `tokenpool-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      fs.mkdirSync(dir);
      return new StepContainment(dir);
    } catch {
      return new StepContainment(null);
    }
  }

  /** The environment variable every process of the step carries. */
  get env(): Record<string, string> {
    const [k, v] = this.mark.split('=') as [string, string];
    return { [k]: v };
  }

  /** The program and arguments that run `file args` inside the step's cgroup (entered before exec, so no fork slips past). */
  wrap(file: string, args: string[]): { file: string; args: string[] } {
    if (!this.cgroup) return { file, args };
    return { file: '/bin/sh', args: ['-c', 'echo $$ > "$0" && exec "$@"', path.join(this.cgroup, 'cgroup.procs'), file, ...args] };
  }

  /** The step was started as the leader of this process group. */
  attach(pgid: number): void {
    this.pgid = pgid;
  }

  /** The step's live processes (not zombies). */
  members(): number[] {
    const found = new Set<number>();
    if (this.cgroup) for (const pid of readPids(path.join(this.cgroup, 'cgroup.procs'))) found.add(pid);
    const needle = Buffer.from(`\0${this.mark}\0`);
    const first = Buffer.from(`${this.mark}\0`);
    let entries: string[] = [];
    try {
      entries = fs.readdirSync('/proc');
    } catch {
      // no /proc: the process group is all there is
    }
    for (const entry of entries) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid === process.pid || found.has(pid)) continue;
      const stat = procStat(pid);
      if (!stat || stat.state === 'Z') continue;
      if (stat.pgrp === this.pgid) {
        found.add(pid);
        continue;
      }
      const environ = readQuietly(`/proc/${pid}/environ`);
      if (environ && (environ.includes(needle) || environ.subarray(0, first.length).equals(first))) found.add(pid);
    }
    for (const pid of found) if (procStat(pid)?.state === 'Z') found.delete(pid);
    return [...found];
  }

  /** Sends `sig` to every process of the step; returns how many there were. */
  signal(sig: NodeJS.Signals): number {
    if (this.pgid !== undefined) kill(-this.pgid, sig);
    const pids = this.members();
    for (const pid of pids) kill(pid, sig);
    return pids.length;
  }

  /** SIGKILL until nothing of the step is left (bounded: a process stuck in the kernel cannot hold the agent). */
  async killAll(): Promise<boolean> {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      if (this.cgroup) writeQuietly(path.join(this.cgroup, 'cgroup.kill'), '1');
      if (this.signal('SIGKILL') === 0) return true;
      await new Promise((r) => setTimeout(r, KILL_ROUND_MS));
    }
    return false;
  }

  /** Removes the step's cgroup (once it is empty). */
  dispose(): void {
    if (!this.cgroup) return;
    try {
      fs.rmdirSync(this.cgroup);
    } catch {
      // still populated (a process in uninterruptible sleep): the watchdog tries again
    }
  }

  /**
   * A shell sweep for the watchdog, which outlives the agent: `sweep SIG` signals the same processes
   * as signal() (group, cgroup, marker). Arguments: $2 pgid, $4 marker, $5 cgroup (may be empty).
   */
  static readonly SWEEP_SH = [
    'sweep() {',
    '  kill -$1 -$2 2>/dev/null',
    '  [ -n "$5" ] && for p in $(cat "$5/cgroup.procs" 2>/dev/null); do kill -$1 $p 2>/dev/null; done',
    '  for e in /proc/[0-9]*/environ; do grep -qzxF "$4" "$e" 2>/dev/null && { p=${e#/proc/}; kill -$1 ${p%/environ} 2>/dev/null; }; done',
    '}',
  ].join('\n');
}

let usableParent: string | null | undefined;

/**
 * The agent's own cgroup v2 directory, when the agent can create a child cgroup there and move a
 * process into it (checked once per agent with a throwaway shell). Null on cgroup v1-only nodes,
 * without permission (a batch system's job cgroup owned by root), or without /proc.
 */
function cgroupParent(): string | null {
  if (usableParent !== undefined) return usableParent;
  usableParent = null;
  const mount = cgroup2Mount();
  const own = readQuietly('/proc/self/cgroup')
    ?.toString()
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!mount || !own) return null;
  const parent = path.join(mount, own.slice(3));
  const probe = path.join(parent, `tokenpool-probe-${process.pid}`);
  try {
    fs.mkdirSync(probe);
  } catch {
    return null;
  }
  try {
    const res = spawnSync('/bin/sh', ['-c', 'echo $$ > "$0"/cgroup.procs', probe], { stdio: 'ignore', timeout: 5000 });
    if (res.status === 0) usableParent = parent;
  } finally {
    try {
      fs.rmdirSync(probe);
    } catch {
      // the probe shell is gone by now; a leftover empty cgroup is harmless
    }
  }
  return usableParent;
}

function cgroup2Mount(): string | null {
  const info = readQuietly('/proc/self/mountinfo')?.toString() ?? '';
  for (const line of info.split('\n')) {
    const [left, right] = line.split(' - ');
    if (right?.startsWith('cgroup2 ')) return left!.split(' ')[4] ?? null;
  }
  return null;
}

function procStat(pid: number): { state: string; pgrp: number } | null {
  const stat = readQuietly(`/proc/${pid}/stat`)?.toString();
  if (!stat) return null;
  // "pid (comm) state ppid pgrp …": comm may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, pgrp: Number(fields[2]) };
}

function readPids(file: string): number[] {
  return (readQuietly(file)?.toString() ?? '')
    .split('\n')
    .filter(Boolean)
    .map(Number);
}

function readQuietly(file: string): Buffer | null {
  try {
    return fs.readFileSync(file);
  } catch {
    return null; // gone meanwhile, or another user's
  }
}

function writeQuietly(file: string, data: string): void {
  try {
    fs.writeFileSync(file, data);
  } catch {
    // cgroup.kill needs Linux 5.14: the signal sweep does the same
  }
}

function kill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: gone already
  }
}
