/**
 * `tokenpool submit grid --backend dirac|glite`: stages an input sandbox (pilot.sh, the agent bundle,
 * the pilot credentials as tokenpool-credentials.json), renders jdl/pilot.jdl as a parametric job of N
 * pilots and submits it with dirac-wms-job-submit or glite-wms-job-submit -d $USER, recording the job
 * ids in the pool. Secrets travel only inside the sandbox file, never in the JDL or on a command line.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { InputError, TokenpoolError } from '../../server/errors.js';
import { parseSlurmDuration } from '../../server/slurm.js';
import { newSubmission, saveSubmission, type Submission } from '../../server/submissions.js';
import { redactText } from '../../server/redact.js';
import { printJson, printLine } from '../output.js';
import { jdlString, PILOT_SCRIPT, readTemplate, renderTemplate, shQuote } from './submit-template.js';
import { agentBundle } from './agent-bundle.js';
import { batchClientEnv, type PilotCredentials } from './submit-credentials.js';
import { storageFiles } from './submit-storage.js';
import { commonSubmitOptions, prepareSubmission, type CommonSubmitArgs } from './submit-common.js';

export type GridBackend = 'dirac' | 'glite';

export interface GridArgs extends CommonSubmitArgs {
  backend: GridBackend;
  wholeNodes: boolean;
  site?: string;
  vo?: string;
  requirements?: string;
  delegation?: string;
  sandboxDir?: string;
}

/** Names the files have in the sandbox, i.e. in the pilot's working directory on the worker node. */
export const SANDBOX = { pilot: 'pilot.sh', bundle: 'tokenpool-agent.mjs', credentials: 'tokenpool-credentials.json', macaroons: 'tokenpool-macaroons.json', bearer: 'tokenpool-bearer-token', jdl: 'pilot.jdl' } as const;

export interface GridPlan {
  jdl: string;
  jdlFile: string;
  command: string[];
  options: Submission['options'];
}

/** Copies the sandbox files into `dir` (0700; the credentials copy stays 0600) and renders the JDL there. */
export function stageGridSubmission(args: GridArgs, creds: PilotCredentials, agentArgs: readonly string[], dir: string, count: number): GridPlan {
  const limit = parseSlurmDuration(args.time);
  if (limit === null || limit <= 0) throw new InputError(`--time ${args.time} is not a time limit`, 'Use minutes, HH:MM:SS or D-HH:MM:SS, e.g. --time 24:00:00');
  if (!Number.isInteger(args.cpus) || args.cpus < 1) throw new InputError(`--cpus must be a positive whole number, got ${args.cpus}`);
  if (!Number.isInteger(count) || count < 1) throw new InputError(`--count must be a positive whole number, got ${count}`);
  const bundle = agentBundle(args.bundle);
  const jobName = args.jobName ?? 'tokenpool-pilot';
  // The grid sends no warning before its wall-clock limit: stop claiming a little before it.
  const maxTime = Math.max(60, limit - Math.min(600, Math.floor(limit / 10)));
  const argv = ['--max-time', String(maxTime), '--idle-exit', String(args.idleExit), ...agentArgs];

  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const staged = (name: string) => path.join(dir, name);
  fs.copyFileSync(PILOT_SCRIPT, staged(SANDBOX.pilot));
  fs.chmodSync(staged(SANDBOX.pilot), 0o755);
  fs.copyFileSync(bundle, staged(SANDBOX.bundle));
  fs.rmSync(staged(SANDBOX.credentials), { force: true });
  fs.writeFileSync(staged(SANDBOX.credentials), fs.readFileSync(creds.file), { mode: 0o600, flag: 'wx' });
  // Storage credentials travel the same way: 0600 copies in the sandbox, found by pilot.sh.
  const storage = storageFiles(args);
  const extra = [
    ...(storage.macaroons ? [[SANDBOX.macaroons, storage.macaroons]] : []),
    ...(storage.bearerTokenFile ? [[SANDBOX.bearer, storage.bearerTokenFile]] : []),
  ] as Array<[string, string]>;
  for (const [name, from] of extra) {
    fs.rmSync(staged(name), { force: true });
    fs.writeFileSync(staged(name), fs.readFileSync(from), { mode: 0o600, flag: 'wx' });
  }

  const dirac = args.backend === 'dirac';
  const requirements = args.requirements ?? (dirac ? undefined : `other.GlueCEPolicyMaxWallClockTime >= ${Math.ceil(limit / 60)}`);
  const jdl = renderTemplate(readTemplate('pilot.jdl'), {
    job_name: jdlString(jobName).slice(1, -1),
    count,
    arguments: jdlString(argv.map(shQuote).join(' ')).slice(1, -1),
    input_sandbox: `{${[SANDBOX.pilot, SANDBOX.bundle, SANDBOX.credentials, ...extra.map(([name]) => name)].map((f) => jdlString(staged(f))).join(', ')}}`,
    cpus: args.cpus,
    whole_nodes: args.wholeNodes ? 'true' : 'false',
    number_of_processors: dirac ? args.cpus : null,
    cpu_time: dirac ? limit : null,
    site: args.site ? jdlString(args.site) : null,
    vo: args.vo && !dirac ? jdlString(args.vo) : null,
    requirements: requirements ?? null,
  });
  const jdlFile = staged(SANDBOX.jdl);
  fs.writeFileSync(jdlFile, jdl + '\n');
  const delegation = args.delegation ?? process.env.USER ?? os.userInfo().username;
  const command = dirac ? ['dirac-wms-job-submit', jdlFile] : ['glite-wms-job-submit', '-d', delegation, jdlFile];
  return {
    jdl,
    jdlFile,
    command,
    options: {
      job_name: jobName,
      time: args.time,
      max_time: maxTime,
      idle_exit: args.idleExit,
      cpus: args.cpus,
      whole_nodes: args.wholeNodes,
      site: args.site ?? null,
      vo: args.vo ?? null,
      requirements: requirements ?? null,
      credentials: creds.file,
      macaroons: storage.macaroons,
      bearer_token_file: storage.bearerTokenFile,
      agent_args: agentArgs.join(' ') || null,
    },
  };
}

/** Job ids in a submit tool's output: DIRAC prints "JobID = 123" or "JobID = [123, 124]", gLite the job's https URL. */
export function parseJobIds(backend: GridBackend, output: string): string[] {
  if (backend === 'dirac') {
    const m = /JobID\s*=\s*\[?([\d,\s]+)\]?/.exec(output);
    return m ? m[1]!.split(/[,\s]+/).filter(Boolean) : [];
  }
  // A job id stands alone on its line; the WMProxy endpoint the client names shares a line with text.
  return [...new Set([...output.matchAll(/^\s*(https:\/\/[^\s/]+:\d+\/[A-Za-z0-9_-]+)\s*$/gm)].map((m) => m[1]!))];
}

function runSubmitTool(command: string[], cwd: string): Promise<string> {
  const [file, ...argv] = command as [string, ...string[]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { cwd, env: batchClientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'ENOENT'
          ? new TokenpoolError(`${file} not found on PATH`, file.startsWith('dirac') ? 'Set up the DIRAC client (source its bashrc) and get a proxy (dirac-proxy-init).' : 'Set up the gLite UI and delegate a proxy (voms-proxy-init, glite-wms-job-delegate-proxy -d $USER).')
          : err,
      ),
    );
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new TokenpoolError(`${file} failed (exit ${code}): ${redactText(out.trim())}`));
    });
  });
}

export const submitGridCommand: CommandModule<object, GridArgs> = {
  command: 'grid',
  describe: 'Submit pilots as a parametric grid job through DIRAC or a gLite WMS',
  builder: (y: Argv) =>
    commonSubmitOptions(y)
      .option('backend', { type: 'string', choices: ['dirac', 'glite'] as const, demandOption: true, describe: 'Which workload manager to submit through' })
      .option('whole-nodes', { type: 'boolean', default: false, describe: 'Ask for whole nodes (WholeNodes = true)' })
      .option('site', { type: 'string', describe: 'DIRAC site to run at, e.g. LCG.SARA.nl (Site)' })
      .option('vo', { type: 'string', describe: 'Virtual organisation (gLite VirtualOrganisation), e.g. lofar' })
      .option('requirements', { type: 'string', describe: 'ClassAd Requirements expression (gLite default: other.GlueCEPolicyMaxWallClockTime >= the time limit in minutes)' })
      .option('delegation', { type: 'string', describe: 'gLite proxy delegation id (-d; default: $USER)' })
      .option('sandbox-dir', { type: 'string', describe: 'Stage the sandbox and JDL here and keep them (default: a temporary directory, removed after submitting)' })
      .example('$0 submit grid --backend dirac --pilot-credentials ~/pilot.json --count 50 --time 24:00:00', 'Fifty pilots through DIRAC') as unknown as Argv<GridArgs>,
  handler: async (args) => {
    const count = args.count ?? 1;
    const prepared = await prepareSubmission(args, 2);
    const dir = args.sandboxDir ? path.resolve(args.sandboxDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-sandbox-'));
    try {
      const plan = stageGridSubmission(args, prepared.creds, prepared.agentArgs, dir, count);
      if (args.dryRun) {
        if (args.json) printJson({ backend: args.backend, dry_run: true, count, command: plan.command, jdl: plan.jdl });
        else printLine(`# would run: ${plan.command.map(shQuote).join(' ')}\n${plan.jdl}`);
        return;
      }
      const output = await runSubmitTool(plan.command, dir);
      const jobIds = parseJobIds(args.backend, output);
      if (jobIds.length === 0) {
        throw new TokenpoolError(`${plan.command[0]} printed no job id: ${redactText(output.trim())}`, 'The pilots may have been submitted: check with the WMS before submitting again.');
      }
      const record = await saveSubmission(prepared.pool, newSubmission({ backend: args.backend, job_ids: jobIds, count, options: plan.options }));
      if (args.json) printJson(record);
      else printLine(`submitted ${count} pilot${count === 1 ? '' : 's'} through ${args.backend}: ${jobIds.join(' ')} (recorded as ${record._id})`);
    } finally {
      if (!args.sandboxDir) fs.rmSync(dir, { recursive: true, force: true });
    }
  },
};
