/**
 * From a definition, its observations, their SURL lists and the parameters to a run: the run
 * document and every token of every step, with deterministic ids so that making the same run
 * twice writes nothing new. Pure: reading files, hashing images and git are the caller's (make.ts).
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.js';
import { parseSurlList, type Surl } from '../surl.js';
import { newToken, tokenId, type InputFile, type PipelineLink, type Token } from '../token.js';
import { jobValue, substitute, type Definition, type ParameterValue, type StepDef } from './definition.js';
import { runDocId, type ImageRecord, type RunDoc } from './run.js';

export interface RunInputs {
  definition: Definition;
  definitionText: string;
  definitionFile: string;
  git?: RunDoc['definition']['git'];
  /** role → obsid (--obs) */
  observations: Record<string, string>;
  /** role → SURL list text (--surls) */
  surls: Record<string, string>;
  parameters: Record<string, ParameterValue>;
  /** image path → what identifies its content */
  images: Record<string, ImageRecord>;
  /** step → absolute CWL path or URL, and its content hash */
  cwl: Record<string, { workflow: string; sha256: string | null }>;
  /** first steps in status staging (inputs on tape) instead of todo */
  staging: boolean;
  now: number;
}

export interface RunPlan {
  run: RunDoc;
  tokens: Token[];
}

export const sha256 = (text: string | Buffer) => createHash('sha256').update(text).digest('hex');

/** Same definition, observations, files and parameters → same run id. */
export function runId(inputs: Pick<RunInputs, 'definition' | 'definitionText' | 'observations' | 'surls' | 'parameters'>): string {
  const key = JSON.stringify([sha256(inputs.definitionText), sorted(inputs.observations), sorted(mapValues(inputs.surls, (t) => sha256(t))), sorted(inputs.parameters)]);
  return `${inputs.definition.name}-${sha256(key).slice(0, 10)}`;
}

export function planRun(inputs: RunInputs): RunPlan {
  const d = inputs.definition;
  const files = observationFiles(inputs);
  const id = runId(inputs);
  const definitionHash = sha256(inputs.definitionText);
  const byStep = new Map<string, Token[]>();
  const feeds = new Map<string, string[]>();
  const problems: string[] = [];

  for (const step of d.steps) {
    const obsid = inputs.observations[step.observation]!;
    const obsFiles = files.get(step.observation)!;
    const tokens: Token[] = [];
    for (const subbands of fanOut(step, [...obsFiles.keys()])) {
      const own: InputFile[] = step.surls ? subbands.map((sb) => ({ url: obsFiles.get(sb)!.url })) : [];
      const needs: PipelineLink['needs'] = [];
      for (const n of step.needs) {
        const upstream = byStep.get(n.step)!;
        const picked = n.take === 'all' ? upstream : upstream.filter((u) => u.subbands.some((sb) => subbands.includes(sb)));
        if (picked.length === 0) problems.push(`step ${step.name}, subbands ${subbands.join(',')}: no token of ${n.step} covers them (take: ${n.take})`);
        needs.push({ step: n.step, tokens: picked.map((u) => u._id), min_fraction: n.min_fraction });
      }
      const link: PipelineLink = { run: id, step: step.name, definition: definitionHash, needs, feeds: [], own_inputs: own.length };
      const token = newToken(
        {
          obsid,
          step: step.name,
          subbands,
          site: step.surls ? (obsFiles.get(subbands[0]!)?.site ?? null) : null,
          input: own,
          command: step.cwl ? `${step.cwl.runner} ${inputs.cwl[step.name]!.workflow}` : substitute(step.command!, inputs.parameters),
          image: step.image ?? null,
          results: step.results ? substitute(step.results, inputs.parameters) : null,
          requirements: step.requirements,
          ...(step.max_attempts !== undefined ? { max_attempts: step.max_attempts } : {}),
          ...(step.priority !== undefined ? { priority: step.priority } : {}),
          status: step.needs.length ? 'waiting' : inputs.staging ? 'staging' : 'todo',
          extra: {
            pipeline: link,
            parameters: inputs.parameters,
            ...(step.image ? { image_id: inputs.images[step.image]?.id ?? null } : {}),
            ...(step.cwl ? { cwl: cwlField(step, inputs) } : {}),
          },
        },
        inputs.now,
      );
      token._id = `${id}_${tokenId(obsid, step.name, subbands)}`;
      for (const n of needs) for (const up of n.tokens) feeds.set(up, [...(feeds.get(up) ?? []), token._id]);
      tokens.push(token);
    }
    byStep.set(step.name, tokens);
  }
  if (problems.length) throw new InputError(`the run cannot be laid out:\n  ${problems.slice(0, 20).join('\n  ')}`, 'Check the --surls lists against the steps\' take: subband/group; nothing was written.');

  const tokens = d.steps.flatMap((s) => byStep.get(s.name)!);
  for (const t of tokens) t.pipeline!.feeds = feeds.get(t._id) ?? [];

  const run: RunDoc = {
    _id: runDocId(id),
    type: 'pipeline_run',
    run: id,
    name: d.name,
    ...(d.description ? { description: d.description } : {}),
    definition: { file: inputs.definitionFile, sha256: definitionHash, text: inputs.definitionText, ...(inputs.git ? { git: inputs.git } : {}) },
    observations: inputs.observations,
    parameters: inputs.parameters,
    steps: d.steps.map((s) => ({
      name: s.name,
      observation: s.observation,
      per: s.per,
      ...(s.group ? { group: s.group } : {}),
      needs: s.needs,
      image: s.image ? (inputs.images[s.image] ?? { path: s.image, id: null }) : null,
      ...(s.cwl ? { cwl: { ...inputs.cwl[s.name]!, runner: s.cwl.runner } } : {}),
      tokens: byStep.get(s.name)!.length,
    })),
    status: 'active',
    created: inputs.now,
    reruns: [],
  };
  return { run, tokens };
}

function cwlField(step: StepDef, inputs: RunInputs): Record<string, unknown> {
  const cwl = step.cwl!;
  const job: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cwl.job)) job[k] = jobValue(v, inputs.parameters);
  return { workflow: inputs.cwl[step.name]!.workflow, sha256: inputs.cwl[step.name]!.sha256, runner: cwl.runner, container: cwl.container, ...(cwl.inputs ? { inputs: cwl.inputs } : {}), job };
}

/** role → subband → its file, from --surls; every role a step uses must have a list of its own observation. */
function observationFiles(inputs: RunInputs): Map<string, Map<number, Surl>> {
  const problems: string[] = [];
  const out = new Map<string, Map<number, Surl>>();
  const d = inputs.definition;
  for (const role of Object.keys(inputs.observations)) if (!d.observations.includes(role)) problems.push(`--obs ${role}=…: ${d.name} has no observation ${role} (it has ${d.observations.join(', ')})`);
  for (const role of Object.keys(inputs.surls)) if (!d.observations.includes(role)) problems.push(`--surls ${role}=…: ${d.name} has no observation ${role}`);
  for (const role of d.observations) {
    const obsid = inputs.observations[role];
    if (!obsid) {
      problems.push(`observation ${role} not given: add --obs ${role}=L…`);
      continue;
    }
    if (!/^L\d+$/.test(obsid)) problems.push(`--obs ${role}=${obsid}: an observation id looks like L229507`);
    const text = inputs.surls[role];
    if (text === undefined) {
      problems.push(`no files for observation ${role}: add --surls ${role}=FILE (its SURL list; its subbands lay out the steps)`);
      continue;
    }
    const parsed = parseSurlList(text);
    for (const p of parsed.problems.slice(0, 5)) problems.push(`--surls ${role}, line ${p.line}: ${p.message}`);
    const foreign = parsed.surls.find((s) => s.obsid !== obsid);
    if (foreign) problems.push(`--surls ${role}, line ${foreign.line}: a file of ${foreign.obsid}, but --obs ${role}=${obsid}`);
    if (parsed.surls.length === 0 && parsed.problems.length === 0) problems.push(`--surls ${role}: the list holds no files`);
    out.set(role, new Map(parsed.surls.map((s) => [s.subband, s])));
  }
  if (problems.length) throw new InputError(problems.join('\n  '), 'Nothing was written.');
  return out;
}

/** The subbands of each token of a step. Groups are aligned to multiples of N, as `tokens add --group` makes them. */
function fanOut(step: StepDef, subbands: number[]): number[][] {
  const all = [...subbands].sort((a, b) => a - b);
  if (step.per === 'subband') return all.map((sb) => [sb]);
  if (step.per === 'observation') return [all];
  const groups = new Map<number, number[]>();
  for (const sb of all) {
    const key = Math.floor(sb / step.group!);
    groups.set(key, [...(groups.get(key) ?? []), sb]);
  }
  return [...groups.values()];
}

function sorted<T>(o: Record<string, T>): [string, T][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function mapValues<T, U>(o: Record<string, T>, f: (v: T) => U): Record<string, U> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
}
