/**
 * Runs the step as its own process group (detached), so that a time limit, a preemption or a lost
 * lease stops the whole tree: TERM to the group, KILL after the grace period. A watchdog shell
 * kills the group too when the agent itself dies (kill -9), so that no orphaned step keeps writing
 * results for a token another agent will run again.
 */
import { spawn, type ChildProcess } from 'node:child_process';
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
  const started = Date.now();
  // The step writes its output straight into the files (not through the agent, nor through execa's ~100 modules).
  const out = fs.openSync(spec.stdoutFile, 'w');
  const err = fs.openSync(spec.stderrFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(spec.file, spec.args, { cwd: spec.cwd, env: spec.env, detached: true, stdio: ['ignore', out, err] });
  } catch (e) {
    return couldNotStart(spec, e as Error);
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
  }
  const ended = new Promise<{ exitCode: number | null; signal: NodeJS.Signals | null } | Error>((resolve) => {
    child.once('error', resolve);
    child.once('exit', (exitCode, signal) => resolve({ exitCode, signal }));
  });
  const pgid = child.pid;
  if (pgid === undefined) return couldNotStart(spec, (await ended) as Error);
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
    const res = await ended;
    if (res instanceof Error) throw res;
    return {
      exitCode: res.exitCode,
      signal: res.signal,
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

function couldNotStart(spec: StepSpec, err: Error): StepResult {
  fs.appendFileSync(spec.stderrFile, `tokenpool: could not start ${spec.file}: ${err.message}\n`);
  return { exitCode: 127, signal: null, timedOut: false, aborted: false, seconds: 0 };
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
