/** `tokenpool tokens add`: tokens from an LTA SURL list, a JSON/YAML spec, or NDJSON; judged whole, then written. */
import type { Argv, CommandModule } from 'yargs';
import { poolFromArgs, withPoolOptions, type PoolArgs } from '../../../server/pool-options.js';
import { printJson, printLine } from '../../output.js';
import { InputError } from '../../../server/errors.js';
import { redactText } from '../../../server/redact.js';
import { detectInputKind, parseNdjson, parseSpecFile, readText, type InputKind } from '../../../server/tokens/input.js';
import { planFromSpecs, planFromSurlList, type Problem, type TokenDefaults, type TokenPlan } from '../../../server/tokens/plan.js';
import { createTokens, DEFAULT_CHUNK } from '../../../server/tokens/write.js';
import { progressBar } from './progress-bar.js';

interface AddArgs extends PoolArgs {
  files?: string[];
  surls?: string;
  spec?: string;
  ndjson?: string;
  step?: string;
  group?: number;
  command?: string;
  image?: string;
  results?: string;
  priority?: number;
  'max-attempts'?: number;
  staging: boolean;
  'allow-mixed': boolean;
  'skip-invalid': boolean;
  'dry-run': boolean;
  'chunk-size': number;
  json: boolean;
}

const SHOWN_PROBLEMS = 20;

export const addCommand: CommandModule<object, AddArgs> = {
  command: 'add [files..]',
  describe: 'Create tokens from an LTA SURL list, a JSON/YAML spec or NDJSON (existing tokens are left alone)',
  builder: (y: Argv) =>
    withPoolOptions(y)
      .positional('files', { type: 'string', array: true, describe: 'SURL lists, JSON/YAML specs or NDJSON files, recognised by their content ("-" reads stdin)' })
      .option('surls', { type: 'string', describe: 'A SURL list: one srm:// (or https://, file://) URL per line, # comments' })
      .option('spec', { type: 'string', describe: 'A JSON or YAML token spec (one object or a list); see docs/tokens.md' })
      .option('ndjson', { type: 'string', nargs: 1, describe: 'NDJSON token specs, one per line; "-" reads stdin' })
      .option('step', { type: 'string', describe: 'Pipeline step the tokens run (required for --surls), e.g. cal1' })
      .option('group', { type: 'number', describe: 'Put N consecutive subbands in one token (blocks aligned to multiples of N)' })
      .option('command', { type: 'string', describe: 'Command the agent runs for each token' })
      .option('image', { type: 'string', describe: 'Container image the command runs in' })
      .option('results', { type: 'string', describe: 'Stage-out location template, e.g. ${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar' })
      .option('priority', { type: 'number', describe: 'Higher runs first (default 0)' })
      .option('max-attempts', { type: 'number', describe: 'Attempts before a token stays in error (default 3)' })
      .option('staging', { type: 'boolean', default: false, describe: 'Create in status staging (inputs on tape, not claimable until staged)' })
      .option('allow-mixed', { type: 'boolean', default: false, describe: 'Accept a SURL list with several observations or sites' })
      .option('skip-invalid', { type: 'boolean', default: false, describe: 'Add the valid tokens and report the invalid lines (default: write nothing)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'Check the input and report, write nothing' })
      .option('chunk-size', { type: 'number', default: DEFAULT_CHUNK, describe: 'Tokens per _bulk_docs request' })
      .check((a) => {
        const flags = ['surls', 'spec', 'ndjson'].filter((k) => a[k] !== undefined).length;
        const files = positionalFiles(a.files as string[] | undefined);
        if (flags + (files.length ? 1 : 0) !== 1) {
          throw new InputError('give the input once: files (tokens add FILE…, kinds told by content), or exactly one of --surls FILE, --spec FILE or --ndjson FILE|-');
        }
        for (const k of ['group', 'priority', 'max-attempts', 'chunk-size'] as const) {
          const v = a[k];
          if (v !== undefined && (!Number.isInteger(v) || (k !== 'priority' && (v as number) < 1))) {
            throw new InputError(`--${k} ${String(v)} must be a${k === 'priority' ? 'n' : ' positive'} integer`);
          }
        }
        if (a.step !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(String(a.step))) {
          throw new InputError(`--step ${JSON.stringify(a.step)} is not usable`, 'Use letters, digits, "_", "." or "-", e.g. cal1.');
        }
        return true;
      })
      .example('$0 tokens add L229507.txt --step cal1 --group 10', 'One token per 10 subbands of a SURL list')
      .example('$0 tokens add --surls L229507.txt --step cal1 --group 10', 'The same, saying what the file is')
      .example('$0 tokens add --spec targets.yaml', 'Tokens described in a spec file')
      .example('generate | $0 tokens add --ndjson -', 'Tokens from another program') as unknown as Argv<AddArgs>,
  handler: async (args) => {
    const defaults: TokenDefaults = {
      step: args.step,
      group: args.group,
      command: args.command,
      image: args.image,
      results: args.results,
      priority: args.priority,
      maxAttempts: args['max-attempts'],
      status: args.staging ? 'staging' : undefined,
    };
    const { plan, source } = buildPlan(args, defaults);
    const refuse = plan.fatal.length > 0 || (plan.problems.length > 0 && !args['skip-invalid']);
    if (refuse && args.json) printJson({ source, written: false, problems: [...plan.fatal, ...plan.problems] });
    if (plan.fatal.length) throw new InputError(`${source}: nothing written:\n${listProblems(plan.fatal)}`);
    if (plan.problems.length && !args['skip-invalid']) {
      throw new InputError(
        `${source}: ${plan.problems.length} invalid ${plan.problems.length === 1 ? 'entry' : 'entries'}, nothing written:\n${listProblems(plan.problems)}`,
        'Fix them, or pass --skip-invalid to add the valid tokens only.',
      );
    }
    if (plan.problems.length) process.stderr.write(redactText(`warning: skipping ${plan.problems.length} invalid:\n${listProblems(plan.problems)}\n`));
    const summary = {
      source,
      tokens: plan.tokens.length,
      created: 0,
      already_present: 0,
      invalid: plan.problems.length,
      duplicates_dropped: plan.duplicates,
      dry_run: args['dry-run'],
      problems: plan.problems,
    };
    if (!args['dry-run'] && plan.tokens.length) {
      const pool = poolFromArgs(args);
      const bar = progressBar(plan.tokens.length, 'adding tokens', !args.json);
      try {
        const written = await createTokens(pool, plan.tokens, { chunkSize: args['chunk-size'], onProgress: (n) => bar.update(n) });
        summary.created = written.created;
        summary.already_present = written.present;
      } finally {
        bar.stop();
      }
    }
    if (args.json) return printJson(summary);
    const parts = args['dry-run']
      ? [`dry run: ${summary.tokens} valid tokens, nothing written`]
      : [`created ${summary.created}`, `already present ${summary.already_present}`];
    if (summary.invalid) parts.push(`invalid ${summary.invalid}`);
    if (summary.duplicates_dropped) parts.push(`duplicate lines dropped ${summary.duplicates_dropped}`);
    printLine(`${source}: ${parts.join(', ')}`);
  },
};

interface Input {
  file: string;
  kind: InputKind;
  text: string;
}

const WHAT: Record<InputKind, string> = { surls: 'SURL list', spec: 'spec file', ndjson: 'NDJSON file' };

/** The files given without a flag, "-" (stdin) last: yargs drops a bare "-" from positionals, so it is looked for in argv. */
function positionalFiles(files: string[] | undefined): string[] {
  const stdin = process.argv.some((arg, i) => arg === '-' && process.argv[i - 1] !== '--ndjson');
  return [...(files ?? []), ...(stdin ? ['-'] : [])];
}

/** The input named by a flag, or the files given without one (read once: "-" is stdin), each of the kind its content tells. */
function inputsOf(args: AddArgs): Input[] {
  const flag = (['surls', 'spec', 'ndjson'] as const).find((k) => args[k] !== undefined);
  if (flag) return [{ file: args[flag]!, kind: flag, text: readText(args[flag]!, WHAT[flag]) }];
  return positionalFiles(args.files).map((file) => {
    const text = readText(file, 'input');
    return { file, kind: detectInputKind(text), text };
  });
}

function planOne({ file, kind, text }: Input, args: AddArgs, defaults: TokenDefaults): TokenPlan {
  if (kind === 'surls') return planFromSurlList(text, defaults, { allowMixed: args['allow-mixed'] });
  if (kind === 'spec') return planFromSpecs(parseSpecFile(text, file), defaults);
  const { specs, problems } = parseNdjson(text);
  const plan = planFromSpecs(specs, defaults);
  // Keep line order in the report: JSON errors and spec errors interleave.
  plan.problems = [...problems, ...plan.problems].sort((a, b) => lineOf(a) - lineOf(b));
  return plan;
}

/** Every input judged before anything is written; with several inputs, problems name their file. */
function buildPlan(args: AddArgs, defaults: TokenDefaults): { plan: TokenPlan; source: string } {
  const inputs = inputsOf(args);
  const name = (file: string) => (file === '-' ? 'stdin' : file);
  if (inputs.length === 1) return { plan: planOne(inputs[0]!, args, defaults), source: name(inputs[0]!.file) };
  const merged: TokenPlan = { tokens: [], problems: [], fatal: [], duplicates: 0 };
  const seen = new Map<string, string>();
  for (const input of inputs) {
    const plan = planOne(input, args, defaults);
    const located = (p: Problem): Problem => ({ where: `${name(input.file)}: ${p.where}`, message: p.message });
    merged.problems.push(...plan.problems.map(located));
    merged.fatal.push(...plan.fatal.map(located));
    merged.duplicates += plan.duplicates;
    for (const token of plan.tokens) {
      const first = seen.get(token._id);
      if (first === undefined) {
        seen.set(token._id, JSON.stringify(token));
        merged.tokens.push(token);
      } else if (first === JSON.stringify(token)) merged.duplicates++;
      else merged.problems.push({ where: name(input.file), message: `token ${token._id} is also made, differently, by an earlier input` });
    }
  }
  return { plan: merged, source: inputs.map((i) => name(i.file)).join(', ') };
}

function lineOf(p: Problem): number {
  return Number(/^line (\d+)/.exec(p.where)?.[1] ?? 0);
}

function listProblems(problems: readonly Problem[]): string {
  const shown = problems.slice(0, SHOWN_PROBLEMS).map((p) => `  ${p.where}: ${p.message}`);
  if (problems.length > SHOWN_PROBLEMS) shown.push(`  … and ${problems.length - SHOWN_PROBLEMS} more (--json lists them all)`);
  return shown.join('\n');
}
