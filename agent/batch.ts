/** What the batch system tells a pilot about itself: its job ids and when it will be killed. */
import { execFile } from 'node:child_process';
import type { BatchIds } from '../server/lease.js';

/** Job ids from the environment of Slurm, DIRAC, gLite WMS and PBS (null when not under one). */
export function batchIds(env: NodeJS.ProcessEnv = process.env): BatchIds {
  const arrayJob = env.SLURM_ARRAY_JOB_ID;
  const arrayTask = env.SLURM_ARRAY_TASK_ID;
  return {
    slurm_job_id: arrayJob && arrayTask ? `${arrayJob}_${arrayTask}` : env.SLURM_JOB_ID || null,
    dirac_job_id: env.DIRACJOBID || null,
    wms_job_id: env.GLITE_WMS_JOBID || null,
    pbs_job_id: env.PBS_JOBID || null,
  };
}

/**
 * Unix time at which the batch system ends this job, when it can be read: SLURM_JOB_END_TIME, else
 * `squeue -h -j $SLURM_JOB_ID -o %e`. Null when not under Slurm or the end is unknown.
 */
export async function batchEndTime(env: NodeJS.ProcessEnv = process.env): Promise<number | null> {
  const fromEnv = Number(env.SLURM_JOB_END_TIME);
  if (Number.isFinite(fromEnv) && fromEnv > 0) return Math.floor(fromEnv);
  const jobId = env.SLURM_JOB_ID;
  if (!jobId) return null;
  const out = await new Promise<string | null>((resolve) => {
    execFile('squeue', ['-h', '-j', jobId, '-o', '%e'], { timeout: 5000 }, (err, stdout) => resolve(err ? null : stdout));
  });
  return parseSlurmTime(out);
}

/** squeue prints local time without a zone, e.g. 2024-05-01T13:45:00; "N/A" or "Unknown" when there is none. */
export function parseSlurmTime(text: string | null): number | null {
  const s = text?.trim();
  if (!s || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/.test(s)) return null;
  const ms = new Date(s).getTime();
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : null;
}
