/**
 * What Slurm says about pilot jobs: `squeue --json` read into one state per array task, and Slurm's
 * time-limit syntax. Used by `tokenpool pilots`, status and the autopilot; nothing here submits.
 */
import { execFile } from 'node:child_process';
import os from 'node:os';

export type PilotState = 'queued' | 'running' | 'finished';

/** States of one array job: how many of its tasks are in each state (tasks squeue no longer lists are absent). */
export interface ArrayJobStates {
  queued: number;
  running: number;
  finished: number;
}

const QUEUED = new Set(['PENDING', 'REQUEUED', 'REQUEUE_FED', 'REQUEUE_HOLD', 'RESV_DEL_HOLD', 'SPECIAL_EXIT', 'RESIZING']);
const RUNNING = new Set(['RUNNING', 'CONFIGURING', 'COMPLETING', 'SIGNALING', 'STAGE_OUT', 'STOPPED', 'SUSPENDED']);

export function pilotState(slurmState: string): PilotState {
  if (QUEUED.has(slurmState)) return 'queued';
  if (RUNNING.has(slurmState)) return 'running';
  return 'finished';
}

/**
 * Reads `squeue --json` output (Slurm 22.05 to 24.x shapes: job_state a string or a list, numbers plain
 * or {set, number}) into task-state counts per array job id. A pending array shows as one record whose
 * array_task_string ("2-5", "0,3-7%2") names the tasks still queued.
 */
export function parseSqueueJson(text: string): Map<string, ArrayJobStates> {
  let doc: { jobs?: unknown };
  try {
    doc = JSON.parse(text) as { jobs?: unknown };
  } catch (err) {
    throw new Error(`squeue --json printed something that is not JSON: ${(err as Error).message}`);
  }
  const byArray = new Map<string, ArrayJobStates>();
  for (const raw of Array.isArray(doc.jobs) ? (doc.jobs as Record<string, unknown>[]) : []) {
    const jobId = num(raw.job_id);
    const arrayJobId = num(raw.array_job_id) || jobId;
    if (!arrayJobId) continue;
    const state = pilotState(stateOf(raw.job_state));
    const taskString = typeof raw.array_task_string === 'string' ? raw.array_task_string : '';
    const tasks = num(raw.array_task_id) === null && taskString ? countTasks(taskString) : 1;
    const entry = byArray.get(String(arrayJobId)) ?? { queued: 0, running: 0, finished: 0 };
    entry[state] += tasks;
    byArray.set(String(arrayJobId), entry);
  }
  return byArray;
}

function num(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'number' in v) {
    const o = v as { set?: boolean; number?: unknown };
    return o.set === false ? null : typeof o.number === 'number' ? o.number : null;
  }
  return null;
}

function stateOf(v: unknown): string {
  if (Array.isArray(v)) return String(v[0] ?? '');
  return String(v ?? '');
}

/** "0-11%3" → 12, "2,4-5" → 3. */
export function countTasks(taskString: string): number {
  let n = 0;
  for (const part of taskString.split('%')[0]!.split(',')) {
    const m = /^(\d+)(?:-(\d+))?(?::(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    const step = m[3] === undefined ? 1 : Number(m[3]);
    n += Math.floor((last - first) / step) + 1;
  }
  return n;
}

/** Runs `squeue --json` for the current user; rejects when squeue is missing or fails. */
export function squeueStates(env: NodeJS.ProcessEnv = process.env): Promise<Map<string, ArrayJobStates>> {
  return new Promise((resolve, reject) => {
    execFile(
      'squeue',
      ['--json', '--user', os.userInfo().username],
      { env, maxBuffer: 512 * 2 ** 20, timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) {
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          reject(new Error(missing ? 'squeue not found on PATH' : `squeue --json failed: ${String(stderr).trim() || err.message}`));
          return;
        }
        try {
          resolve(parseSqueueJson(stdout));
        } catch (e) {
          reject(e);
        }
      },
    );
  });
}

/**
 * Slurm's --time syntax in seconds: "minutes", "minutes:seconds", "hours:minutes:seconds", "days-hours",
 * "days-hours:minutes", "days-hours:minutes:seconds". Null when the text is not one of these.
 */
export function parseSlurmDuration(text: string): number | null {
  const s = text.trim();
  let m = /^(\d+)-(\d+)(?::(\d+))?(?::(\d+))?$/.exec(s);
  if (m) return Number(m[1]) * 86400 + Number(m[2]) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  m = /^(\d+)(?::(\d+))?(?::(\d+))?$/.exec(s);
  if (!m) return null;
  if (m[3] !== undefined) return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  if (m[2] !== undefined) return Number(m[1]) * 60 + Number(m[2]);
  return Number(m[1]) * 60;
}

/** The cluster's name from `scontrol show config` (ClusterName), to tell our jobs from another cluster's. */
export function slurmClusterName(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('scontrol', ['show', 'config'], { env, timeout: 60_000, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`scontrol show config failed: ${String(stderr).trim() || err.message}`));
        return;
      }
      const m = /^ClusterName\s*=\s*(\S+)/m.exec(stdout);
      if (m) resolve(m[1]!);
      else reject(new Error('scontrol show config names no ClusterName'));
    });
  });
}
