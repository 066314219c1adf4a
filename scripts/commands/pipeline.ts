/** `tokenpool pipeline run|list|status|cancel|rerun|advance`: multi-step runs (docs/pipelines.md). */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../server/pool-options.js';
import { withDb } from '../../server/db-errors.js';
import { ROLES } from '../../server/security.js';
import { printJson, printLine, table } from '../output.js';
import { prepareRun } from '../../server/pipelines/make.js';
import { advanceAllRuns, advanceRun, listRuns, readRun, writeRun } from '../../server/pipelines/runs.js';
import { cancelRun, rerunRun } from '../../server/pipelines/control.js';
import { renderRun, summariseRun } from '../../server/pipelines/summary.js';
import { readerFromPool } from '../../server/status/reader.js';

const WRITE_ROLE = `${ROLES.agent} or ${ROLES.manager}`;

interface RunArgs extends PoolArgs {
  definition: string;
  obs: string[];
  surls: string[];
  set: string[];
  staging: boolean;
  'dry-run': boolean;
  json: boolean;
}

const runCommand: CommandModule<object, RunArgs> = {
  command: 'run <definition>',
  describe: 'Check a pipeline definition with its observations and parameters, then write the run and every token of every step',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('definition', { type: 'string', demandOption: true, describe: 'The pipeline definition (YAML)' })
      .option('obs', { type: 'string', array: true, default: [], describe: 'ROLE=L…: the observation of each role the definition names' })
      .option('surls', { type: 'string', array: true, default: [], describe: 'ROLE=FILE: the SURL list of a role\'s observation (its subbands lay out the steps)' })
      .option('set', { type: 'string', array: true, default: [], describe: 'NAME=VALUE: a parameter (typed as the definition declares it)' })
      .option('staging', { type: 'boolean', default: false, describe: 'First steps start in staging (inputs on tape; `tokenpool stage` brings them online)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Check and lay out the run, write nothing' })
      .example('$0 pipeline run linc.yaml --obs calibrator=L229507 --obs target=L229587 --surls calibrator=cal.surls --surls target=target.surls', 'A LINC-shaped run')
      .example('$0 pipeline run linc.yaml … --set time_avg=2 --dry-run', 'Check a run with a parameter changed') as unknown as Argv<RunArgs>,
  handler: async (args) => {
    const plan = await prepareRun({ file: args.definition, obs: args.obs, surls: args.surls, sets: args.set, staging: args.staging });
    const perStep = plan.run.steps.map((s) => ({ step: s.name, tokens: s.tokens }));
    if (args['dry-run']) {
      if (args.json) return printJson({ dry_run: true, run: plan.run.run, steps: perStep, tokens: plan.tokens.length });
      printLine(`dry run: run ${plan.run.run} would have ${plan.tokens.length} tokens`);
      return printLine(table([['step', 'tokens'], ...perStep.map((s) => [s.step, s.tokens])]));
    }
    const pool = poolFromArgs(args);
    const res = await withDb(pool, 'write a pipeline run', () => writeRun(pool, plan), { role: WRITE_ROLE });
    if (args.json) return printJson({ ...res, steps: perStep });
    printLine(`run ${res.run}: ${res.runCreated ? 'created' : 'already in the pool'}; tokens: ${res.created} created, ${res.present} already present`);
    printLine(table([['step', 'tokens'], ...perStep.map((s) => [s.step, s.tokens])]));
    printLine(`follow it with: tokenpool pipeline status ${res.run}`);
  },
};

interface ListArgs extends PoolArgs {
  json: boolean;
}

const listCommand: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'The runs in the pool, newest first',
  builder: (y: Argv) => withPoolOptions(y).example('$0 pipeline list', 'Every run with its observations and state') as unknown as Argv<ListArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const runs = await withDb(pool, 'list pipeline runs', () => listRuns(readerFromPool(pool)));
    if (args.json) return printJson(runs.map(({ definition, ...r }) => ({ ...r, definition: { ...definition, text: undefined } })));
    if (runs.length === 0) return printLine('no pipeline runs in this pool');
    printLine(
      table([
        ['run', 'pipeline', 'observations', 'steps', 'state', 'created'],
        ...runs.map((r) => [r.run, r.name, Object.values(r.observations).join(','), r.steps.length, r.status, new Date(r.created * 1000).toISOString()]),
      ]),
    );
  },
};

interface RunIdArgs extends PoolArgs {
  run: string;
  json: boolean;
}

const statusCommand: CommandModule<object, RunIdArgs> = {
  command: 'status <run>',
  describe: 'A run\'s steps in order: tokens per state, what each waits for, which failures block what',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('run', { type: 'string', demandOption: true, describe: 'Run id (or a unique beginning of it)' })
      .example('$0 pipeline status linc-demo-3f2a', 'The table of one run') as unknown as Argv<RunIdArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const summary = await withDb(pool, 'read a pipeline run', async () => summariseRun(readerFromPool(pool), await readRun(pool, args.run)));
    if (args.json) return printJson(summary);
    printLine(renderRun(summary, table));
  },
};

const cancelCommand: CommandModule<object, RunIdArgs> = {
  command: 'cancel <run>',
  describe: 'Stop a run: its tokens not started end in error ("cancelled"); tokens being worked on finish',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('run', { type: 'string', demandOption: true, describe: 'Run id (or a unique beginning of it)' })
      .example('$0 pipeline cancel linc-demo-3f2a', 'Cancel a run') as unknown as Argv<RunIdArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const res = await withDb(pool, 'cancel a pipeline run', async () => cancelRun(pool, await readRun(pool, args.run)), { role: WRITE_ROLE });
    if (args.json) return printJson(res);
    printLine(`cancelled ${res.changed} tokens${res.running ? `; ${res.running} being worked on will finish` : ''}${res.conflicts ? `; ${res.conflicts} kept conflicting (run again)` : ''}`);
  },
};

interface RerunArgs extends RunIdArgs {
  from: string;
  image?: string;
}

const rerunCommand: CommandModule<object, RerunArgs> = {
  command: 'rerun <run>',
  describe: 'Run a step and everything downstream of it again (history kept), optionally with a new image for that step',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('run', { type: 'string', demandOption: true, describe: 'Run id (or a unique beginning of it)' })
      .option('from', { type: 'string', demandOption: true, describe: 'The step to start again from' })
      .option('image', { type: 'string', describe: 'A new software image for the --from step (recorded on the run)' })
      .example('$0 pipeline rerun linc-demo-3f2a --from target_apply', 'Redo the target and everything after it')
      .example('$0 pipeline rerun linc-demo-3f2a --from solve --image /cvmfs/…/linc_v5.1.sif', 'Redo the solve with a new image') as unknown as Argv<RerunArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const res = await withDb(pool, 'rerun a pipeline', async () => rerunRun(pool, await readRun(pool, args.run), args.from, args.image), { role: WRITE_ROLE });
    if (args.json) return printJson(res);
    printLine(`rerun from ${args.from}: ${res.changed} tokens of ${res.steps.join(', ')} start again (${res.advanced.released.length} released at once)${res.image ? `; image ${res.image.path}${res.image.id ? ` ${res.image.id.slice(0, 19)}` : ''}` : ''}`);
  },
};

interface AdvanceArgs extends PoolArgs {
  run?: string;
  json: boolean;
}

const advanceCommand: CommandModule<object, AdvanceArgs> = {
  command: 'advance [run]',
  describe: 'Decide every waiting token again: releases, blocks and unblocks a crash left undone (tokens scrub does this too)',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('run', { type: 'string', describe: 'Only this run (default: every active run)' })
      .example('$0 pipeline advance', 'Repair every active run') as unknown as Argv<AdvanceArgs>,
  handler: async (args) => {
    const pool = poolFromArgs(args);
    const res = await withDb(pool, 'advance pipeline runs', async () => (args.run ? { ...(await advanceRun(pool, await readRun(pool, args.run))), runs: 1 } : advanceAllRuns(pool)), { role: WRITE_ROLE });
    if (args.json) return printJson(res);
    printLine(`${res.runs} runs: ${res.released.length} tokens released, ${res.blocked.length} blocked, ${res.unblocked.length} unblocked${res.conflicts ? `, ${res.conflicts} kept conflicting (run again)` : ''}`);
  },
};

export const pipelineCommand: CommandModule = {
  command: 'pipeline',
  describe: 'Multi-step pipeline runs: run a definition, follow, cancel, rerun from a step',
  builder: (y: Argv) =>
    y
      .command([runCommand, listCommand, statusCommand, cancelCommand, rerunCommand, advanceCommand] as CommandModule[])
      .demandCommand(1, 'Name a pipeline subcommand; see the list above.'),
  handler: () => undefined,
};
