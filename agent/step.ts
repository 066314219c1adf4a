/**
 * Runs the step in a session and process group of its own, contained (agent/containment.ts) so that a
 * time limit, a preemption or a lost lease stops everything it started, also children that left its
 * group: TERM to all of it, KILL after the grace period. A watchdog shell does the same when the
 * agent itself dies (kill -9), so that no orphaned step keeps writing results for a token another
 * agent will run again.
 *
 * The step's stdout and stderr are files it holds itself (its own descriptors of them, opened by the
 * agent and closed on its side at once), not pipes through the agent: however much the step writes,
 * the agent's memory does not grow, a slow agent never blocks the step's writes nor breaks them
 * (SIGPIPE), and the step's end is its own exit, whatever descendants still hold the files.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { StepContainment } from './containment.js';

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
  /** contain the step in a cgroup v2 of its own when this node allows it */
  cgroups: boolean;
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

/** How long the agent waits for a KILLed step to be gone (a process stuck in the kernel cannot be waited for). */
const KILLED_WAIT_MS = 2000;

export async function runStep(spec: StepSpec): Promise<StepResult> {
  const started = Date.now();
  const jail = StepContainment.create(spec.cgroups);
  const { file, args } = jail.wrap(spec.file, spec.args);
  const out = fs.openSync(spec.stdoutFile, 'w');
  const err = fs.openSync(spec.stderrFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(file, args, { cwd: spec.cwd, env: { ...spec.env, ...jail.env }, detached: true, stdio: ['ignore', out, err] });
  } finally {
    // The step has its own descriptors now; the agent keeps none open on its output.
    fs.closeSync(out);
    fs.closeSync(err);
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const spawnError = await new Promise<Error | null>((resolve) => {
    child.once('spawn', () => resolve(null));
    child.once('error', resolve);
  });
  if (spawnError || child.pid === undefined) {
    jail.dispose();
    fs.appendFileSync(spec.stderrFile, `tokenpool: could not start ${spec.file}: ${spawnError?.message ?? 'unknown error'}\n`);
    return { exitCode: 127, signal: null, timedOut: false, aborted: false, seconds: 0 };
  }
  const pgid = child.pid;
  jail.attach(pgid);
  const watchdog = startWatchdog(pgid, spec.graceS, jail);
  let timedOut = false;
  let aborted = false;
  let killTimer: NodeJS.Timeout | undefined;
  let giveUp: () => void = () => {};
  const gaveUp = new Promise<null>((resolve) => (giveUp = () => resolve(null)));
  let giveUpTimer: NodeJS.Timeout | undefined;
  const stop = (graceS: number) => {
    if (killTimer) return;
    jail.signal('SIGTERM');
    killTimer = setTimeout(() => {
      jail.signal('SIGKILL');
      giveUpTimer = setTimeout(giveUp, KILLED_WAIT_MS);
    }, graceS * 1000);
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
    const res = await Promise.race([exited, gaveUp]);
    // Not gone after KILL (uninterruptible sleep): the agent goes on without it.
    if (!res) child.unref();
    return {
      exitCode: res ? res.code : null,
      signal: res ? res.signal : 'SIGKILL',
      timedOut,
      aborted,
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    clearTimeout(limitTimer);
    clearTimeout(killTimer);
    clearTimeout(giveUpTimer);
    spec.signal.removeEventListener('abort', onAbort);
    // Nothing the step started may outlive it: what is left (background children, escaped sessions) is killed now.
    await jail.killAll();
    jail.dispose();
    watchdog.kill('SIGKILL');
  }
}

/** A shell in its own session that waits for the agent to vanish, then stops everything of the step. */
function startWatchdog(pgid: number, graceS: number, jail: StepContainment): ChildProcess {
  const script = [
    StepContainment.SWEEP_SH,
    'while kill -0 $1 2>/dev/null; do sleep 1; done',
    'sweep TERM "$2" x "$4" "$5"; sleep $3; sweep KILL "$2" x "$4" "$5"',
    '[ -n "$5" ] && rmdir "$5" 2>/dev/null',
  ].join('\n');
  const args = [String(process.pid), String(pgid), String(Math.ceil(graceS)), jail.mark, jail.cgroup ?? ''];
  const dog = spawn('/bin/sh', ['-c', script, 'watchdog', ...args], { detached: true, stdio: 'ignore' });
  dog.unref();
  return dog;
}
