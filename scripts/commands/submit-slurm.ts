/**
 * `tokenpool submit slurm`: renders jdl/pilot.sbatch for an array of N pilots and submits it with
 * `sbatch --parsable` (script on stdin), recording the submission in the pool. With --auto it keeps
 * enough pilots queued for the claimable tokens (submit-auto.ts).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { InputError, TokenpoolError } from '../../server/errors.js';
import type { Pool } from '../../server/client.js';
import { parseSlurmDuration, slurmClusterName } from '../../server/slurm.js';
import { newSubmission, saveSubmission, type Submission } from '../../server/submissions.js';
import { redactText } from '../../server/redact.js';
import { printJson, printLine } from '../output.js';
import { PILOT_SCRIPT, readTemplate, renderTemplate, shQuote } from './submit-template.js';
import { agentBundle } from './agent-bundle.js';
import { batchClientEnv, type PilotCredentials } from './submit-credentials.js';
import { storageFiles } from './submit-storage.js';
import { runAutopilot } from './submit-auto.js';
import { commonSubmitOptions, prepareSubmission, type CommonSubmitArgs } from './submit-common.js';

export interface SlurmArgs extends CommonSubmitArgs {
  parallel?: number;
  partition?: string;
  account?: string;
  mem?: string;
  signalGrace: number;
  scratch?: string;
  logDir: string;
  sbatchOption?: string[];
  node?: string;
  auto: boolean;
  once: boolean;
  maxQueued: number;
  interval: number;
}

/** What every pilot array of one `submit slurm` shares; only the count differs between autopilot rounds. */
export interface SlurmPlan {
  values: Record<string, string | number | null | readonly string[]>;
  options: Submission['options'];
}

const NAME = /^[A-Za-z0-9_.-]+$/;
const LIST = /^[A-Za-z0-9_.,-]+$/;

export function slurmPlan(args: SlurmArgs, creds: PilotCredentials, agentArgs: readonly string[], dbName: string): SlurmPlan {
  const limit = parseSlurmDuration(args.time);
  if (limit === null || limit <= 0) {
    throw new InputError(`--time ${args.time} is not a Slurm time limit`, 'Use minutes, HH:MM:SS or D-HH:MM:SS, e.g. --time 12:00:00');
  }
  if (!Number.isInteger(args.signalGrace) || args.signalGrace < 1 || args.signalGrace >= limit) {
    throw new InputError(`--signal-grace must be a whole number of seconds below the time limit (${limit} s), got ${args.signalGrace}`);
  }
  if (args.signalGrace > 65535) throw new InputError('--signal-grace can be at most 65535 seconds (Slurm\'s limit)');
  checkPositive('cpus', args.cpus);
  if (args.parallel !== undefined) checkPositive('parallel', args.parallel);
  checkPositive('max-queued', args.maxQueued);
  for (const [flag, value, re] of [
    ['partition', args.partition, LIST],
    ['account', args.account, NAME],
    ['job-name', args.jobName, NAME],
  ] as const) {
    if (value !== undefined && !re.test(value)) throw new InputError(`--${flag} "${value}" has characters Slurm names do not use`, 'Letters, digits, "_", "." and "-" only.');
  }
  if (args.mem !== undefined && !/^\d+[KMGT]?$/i.test(args.mem)) throw new InputError(`--mem ${args.mem} is not a Slurm memory size`, 'Examples: --mem 4000 (MB), --mem 8G');
  if (args.scratch !== undefined && !/^[A-Za-z0-9_/.${}-]+$/.test(args.scratch)) {
    throw new InputError(`--scratch ${args.scratch} has characters that are not safe in a path`, 'Give a node-local directory, e.g. --scratch \'/scratch/$USER\' or --scratch \'$TMPDIR\'.');
  }
  const logDir = path.resolve(args.logDir);
  if (/[\s%]/.test(logDir)) throw new InputError(`--log-dir ${logDir} must not hold spaces or "%"`);
  const sbatchOptions = (args.sbatchOption ?? []).map(String);
  for (const o of sbatchOptions) {
    if (!/^--?[A-Za-z]/.test(o)) throw new InputError(`--sbatch-option "${o}" is not an sbatch option`, 'Example: --sbatch-option=--qos=long');
    if (/^--wrap\b/.test(o)) throw new InputError('--sbatch-option --wrap is not allowed: the pilot script is the job');
  }
  const bundle = agentBundle(args.bundle);
  checkFile(PILOT_SCRIPT, 'jdl/pilot.sh', 'Reinstall tokenpool: the pilot script is part of it.');
  const jobName = args.jobName ?? `tokenpool-${dbName.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
  const maxTime = Math.max(60, limit - args.signalGrace);
  const storage = storageFiles(args);
  // What the sbatch script states and the submission record keeps alike.
  const common = {
    job_name: jobName,
    time: args.time,
    partition: args.partition ?? null,
    account: args.account ?? null,
    cpus: args.cpus,
    mem: args.mem ?? null,
    max_time: maxTime,
    idle_exit: args.idleExit,
    log_dir: logDir,
  };
  return {
    // Template values: paths shell-quoted for the script.
    values: {
      ...common,
      grace: args.signalGrace,
      sbatch_options: sbatchOptions,
      credentials: shQuote(creds.file),
      macaroons: storage.macaroons === null ? null : shQuote(storage.macaroons),
      bearer_token_file: storage.bearerTokenFile === null ? null : shQuote(storage.bearerTokenFile),
      bundle: shQuote(bundle),
      scratch: args.scratch === undefined ? null : `"${args.scratch}"`,
      node: args.node === undefined ? null : shQuote(path.resolve(args.node)),
      pilot: shQuote(PILOT_SCRIPT),
      agent_args: agentArgs.map((a) => ` ${shQuote(a)}`).join(''),
    },
    options: {
      ...common,
      signal_grace: args.signalGrace,
      scratch: args.scratch ?? null,
      credentials: creds.file,
      macaroons: storage.macaroons,
      bearer_token_file: storage.bearerTokenFile,
      bundle,
      sbatch_options: sbatchOptions.join(' ') || null,
      agent_args: agentArgs.join(' ') || null,
    },
  };
}

export function renderSbatch(plan: SlurmPlan, count: number, parallel?: number): string {
  return renderTemplate(readTemplate('pilot.sbatch'), {
    ...plan.values,
    last_task: count - 1,
    parallel: Math.min(parallel ?? count, count),
  });
}

/** Submits the script on stdin; returns the array job id. */
export function sbatch(script: string, env: NodeJS.ProcessEnv): Promise<{ jobId: string; cluster: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sbatch', ['--parsable'], { env: batchClientEnv(env), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new TokenpoolError('sbatch not found on PATH', 'Run this on a Slurm login node (or install slurm-client and set SLURM_CONF).')
          : err,
      ),
    );
    child.on('close', (code) => {
      const m = /^(\d+)(?:;(\S+))?\s*$/.exec(stdout.trim());
      if (code !== 0 || !m) {
        reject(new TokenpoolError(`sbatch refused the pilot array (exit ${code}): ${redactText(stderr.trim() || stdout.trim())}`));
        return;
      }
      resolve({ jobId: m[1]!, cluster: m[2] ?? null });
    });
    child.stdin.end(script);
  });
}

/** Renders, submits and records one pilot array. */
export async function submitSlurmArray(pool: Pool, plan: SlurmPlan, count: number, opts: { parallel?: number; auto?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Submission> {
  const env = opts.env ?? process.env;
  fs.mkdirSync(String(plan.values.log_dir), { recursive: true });
  const script = renderSbatch(plan, count, opts.parallel);
  const { jobId, cluster } = await sbatch(script, env);
  const record = newSubmission({
    backend: 'slurm',
    job_ids: [jobId],
    cluster: cluster ?? (await slurmClusterName(env).catch(() => null)),
    count,
    auto: opts.auto ?? false,
    options: { ...plan.options, parallel: Math.min(opts.parallel ?? count, count) },
  });
  try {
    return await saveSubmission(pool, record);
  } catch (err) {
    // The pilots are queued whatever happens to the record: say which job they are.
    const msg = err instanceof Error ? err.message : String(err);
    throw new TokenpoolError(`submitted pilot array ${jobId}, but could not record it: ${msg}`, 'status and --auto will not count these pilots; cancel them with scancel if needed.');
  }
}

export const submitSlurmCommand: CommandModule<object, SlurmArgs> = {
  command: 'slurm',
  describe: 'Submit pilots as a Slurm job array (sbatch), or keep enough queued with --auto',
  builder: (y: Argv) =>
    commonSubmitOptions(y)
      .option('parallel', { type: 'number', describe: 'At most this many pilots of the array run at once (--array=…%K; default: all)' })
      .option('partition', { type: 'string', describe: 'Slurm partition (-p)' })
      .option('account', { type: 'string', describe: 'Slurm account (-A)' })
      .option('mem', { type: 'string', describe: 'Memory per pilot, e.g. 8G (--mem)' })
      .option('signal-grace', {
        type: 'number',
        default: 180,
        describe: 'Seconds before the time limit at which Slurm sends SIGTERM to the pilot, which puts its token back',
      })
      .option('scratch', { type: 'string', describe: 'Node-local scratch base directory on the compute nodes (default: $TMPDIR, else /tmp)' })
      .option('log-dir', { type: 'string', default: 'pilot-logs', describe: 'Directory (on a shared file system) for the pilots\' stdout/stderr' })
      .option('sbatch-option', { type: 'string', array: true, describe: 'Extra #SBATCH option, e.g. --sbatch-option=--qos=long (repeatable)' })
      .option('node', { type: 'string', describe: 'Node.js binary on the compute nodes (TOKENPOOL_NODE for pilot.sh; default: found by pilot.sh)' })
      .option('auto', { type: 'boolean', default: false, describe: 'Autopilot: keep enough pilots queued for the claimable tokens until the pool is drained' })
      .option('once', { type: 'boolean', default: false, describe: 'With --auto: one round, then exit (for crontab/scrontab)' })
      .option('max-queued', { type: 'number', default: 10, describe: 'With --auto: at most this many pilots queued at once' })
      .option('interval', { type: 'number', default: 60, describe: 'With --auto: seconds between rounds' })
      .example('$0 submit slurm --pilot-credentials ~/pilot.json --count 10 --time 12:00:00 --partition normal', 'Ten pilots of 12 h')
      .example('$0 submit slurm --pilot-credentials ~/pilot.json --auto --max-queued 20', 'Keep up to 20 pilots queued until the pool is drained')
      .example('$0 submit slurm --pilot-credentials ~/pilot.json --count 2 -- --step cal1', 'Pass agent flags after --') as unknown as Argv<SlurmArgs>,
  handler: async (args) => {
    if (args.auto && args.count !== undefined) throw new InputError('--auto decides how many pilots to submit: drop --count (bound it with --max-queued)');
    if (!args.auto && args.once) throw new InputError('--once only applies with --auto');
    const prepared = await prepareSubmission(args, 2);
    const plan = slurmPlan(args, prepared.creds, prepared.agentArgs, prepared.pool.dbName);
    if (args.auto) {
      checkPositive('interval', args.interval);
      await runAutopilot({
        pool: prepared.pool,
        maxQueued: args.maxQueued,
        intervalS: args.interval,
        once: args.once || args.dryRun,
        json: args.json,
        submit: async (count) => {
          if (args.dryRun) {
            showDryRun(renderSbatch(plan, count, args.parallel), count, args.json);
            return null;
          }
          return submitSlurmArray(prepared.pool, plan, count, { parallel: args.parallel, auto: true });
        },
      });
      return;
    }
    const count = args.count ?? 1;
    checkPositive('count', count);
    if (args.dryRun) {
      showDryRun(renderSbatch(plan, count, args.parallel), count, args.json);
      return;
    }
    const record = await submitSlurmArray(prepared.pool, plan, count, { parallel: args.parallel });
    if (args.json) printJson(record);
    else printLine(`submitted ${count} pilot${count === 1 ? '' : 's'} as Slurm array job ${record.job_ids[0]} (recorded as ${record._id})`);
  },
};

function showDryRun(script: string, count: number, json: boolean | undefined): void {
  if (json) printJson({ backend: 'slurm', dry_run: true, count, command: ['sbatch', '--parsable'], stdin: script });
  else printLine(`# would run: sbatch --parsable  (this script on stdin, ${count} pilot${count === 1 ? '' : 's'})\n${script}`);
}

function checkPositive(flag: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new InputError(`--${flag} must be a positive whole number, got ${v}`);
}

function checkFile(file: string, what: string, hint: string): void {
  if (!fs.existsSync(file)) throw new InputError(`${what} not found: ${file}`, hint);
}
