/**
 * Runs the step as its own process group (detached), so that a time limit, a preemption or a lost
 * lease stops the whole tree: TERM to the group, KILL after the grace period. A watchdog shell
 * kills the group too when the agent itself dies (kill -9), so that no orphaned step keeps writing
 * results for a token another agent will run again.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';

export interface StepSpec {
  file: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  stdoutFile: string;
  stderrFile: string;
  /** kill the group after this many seconds (requirements.time_limit_s) */
  timeLimitS?: number;
  /** seconds between TERM and KILL */
  graceS: number;
  /** aborting stops the step (preemption, lost lease); signal.reason may carry a grace override */
  signal: AbortSignal;
}

export interface StepResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  aborted: boolean;
  seconds: number;
}

export async function runStep(spec: StepSpec): Promise<StepResult> {
  const { execa } = await import('execa');
  const started = Date.now();
  const child = execa(spec.file, spec.args, {
    cwd: spec.cwd,
    env: spec.env,
    extendEnv: false,
    detached: true,
    stdin: 'ignore',
    stdout: { file: spec.stdoutFile },
    stderr: { file: spec.stderrFile },
    reject: false,
    cleanup: false,
  });
  const pgid = child.pid;
  if (pgid === undefined) {
    const res = await child;
    fs.appendFileSync(spec.stderrFile, `tokenpool: could not start ${spec.file}: ${res.message ?? 'unknown error'}\n`);
    return { exitCode: 127, signal: null, timedOut: false, aborted: false, seconds: 0 };
  }
  const watchdog = startWatchdog(pgid, spec.graceS);
  let timedOut = false;
  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (graceS: number) => {
    if (killTimer) return;
    signalGroup(pgid, 'SIGTERM');
    killTimer = setTimeout(() => signalGroup(pgid, 'SIGKILL'), graceS * 1000);
  };
  const limitTimer =
    spec.timeLimitS !== undefined
      ? setTimeout(() => {
          timedOut = true;
          stop(spec.graceS);
        }, spec.timeLimitS * 1000)
      : undefined;
  const onAbort = () => {
    aborted = true;
    const reason = spec.signal.reason as { graceS?: number } | undefined;
    stop(typeof reason?.graceS === 'number' ? reason.graceS : spec.graceS);
  };
  if (spec.signal.aborted) onAbort();
  else spec.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const res = await child;
    return {
      exitCode: res.exitCode ?? null,
      signal: res.signal ?? null,
      timedOut,
      aborted,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    clearTimeout(limitTimer);
    clearTimeout(killTimer);
    spec.signal.removeEventListener('abort', onAbort);
    // Nothing the step started may outlive it: leftovers in its group are killed now.
    signalGroup(pgid, 'SIGKILL');
    watchdog.kill('SIGKILL');
  }
}

export function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** A shell in its own group that waits for the agent to vanish, then stops the step's group. */
function startWatchdog(pgid: number, graceS: number) {
  const script = `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -TERM -${pgid} 2>/dev/null; sleep ${Math.ceil(graceS)}; kill -KILL -${pgid} 2>/dev/null`;
  const dog = spawn('/bin/sh', ['-c', script], { detached: true, stdio: 'ignore' });
  dog.unref();
  return dog;
}
