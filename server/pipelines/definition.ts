/**
 * A pipeline definition (YAML): named steps, how each fans out over an observation's subbands, which
 * upstream steps it needs and how their outputs become its inputs, and typed parameters.
 * docs/pipelines.md is the prose version of this file.
 */
import yaml from 'js-yaml';
import * as z from 'zod';
import { InputError } from '../errors.js';
import { RequirementsSchema } from '../token.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const name = (what: string) => z.string().regex(NAME, `${what}: letters, digits, "_", "." or "-"`);

export const PARAMETER_TYPES = ['int', 'float', 'string', 'bool'] as const;
export type ParameterType = (typeof PARAMETER_TYPES)[number];
export type ParameterValue = number | string | boolean;

const ParameterSchema = z
  .object({
    type: z.enum(PARAMETER_TYPES),
    default: z.union([z.number(), z.string(), z.boolean()]).optional(),
    description: z.string().optional(),
  })
  .strict();

/** How upstream tokens map onto this step's tokens. */
export const TAKE = ['all', 'subband', 'group'] as const;
export type Take = (typeof TAKE)[number];

const NeedSchema = z
  .object({
    step: name('needs.step'),
    /** all: every token of the upstream step; subband / group: the upstream tokens covering this token's subbands */
    take: z.enum(TAKE).default('all'),
    /** go on when this fraction of the upstream tokens is done and the rest failed for good */
    min_fraction: z.number().gt(0).max(1).default(1),
  })
  .strict();
export type Need = z.infer<typeof NeedSchema>;

const CwlSchema = z
  .object({
    /** CWL file (CommandLineTool or Workflow), relative to the definition or absolute/URL; the nodes must reach it */
    workflow: z.string().min(1),
    runner: z.enum(['cwltool', 'toil-cwl-runner']).default('cwltool'),
    /** the CWL input that receives the staged inputs (an array of File/Directory) */
    inputs: z.string().min(1).optional(),
    /** none: --no-container (tools run on the node as they are); node: the step's image through the node's runtime (cwltool --singularity or --podman) */
    container: z.enum(['none', 'node']).default('none'),
    /** further job-order values; "{{param}}" gives a parameter's typed value */
    job: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type CwlSpec = z.infer<typeof CwlSchema>;

export const FANOUT = ['subband', 'group', 'observation'] as const;

const StepSchema = z
  .object({
    name: name('step name'),
    /** which --obs role the step works on */
    observation: name('observation'),
    per: z.enum(FANOUT).default('subband'),
    group: z.number().int().positive().optional(),
    /** the observation's own files (its SURL list) are inputs too */
    surls: z.boolean().default(false),
    needs: z.array(NeedSchema).default([]),
    command: z.string().min(1).optional(),
    cwl: CwlSchema.optional(),
    image: z.string().min(1).optional(),
    requirements: RequirementsSchema.strict().default({}),
    results: z.string().min(1).optional(),
    max_attempts: z.number().int().positive().optional(),
    priority: z.number().int().optional(),
  })
  .strict();
export type StepDef = z.infer<typeof StepSchema>;

export const DefinitionSchema = z
  .object({
    name: name('pipeline name'),
    description: z.string().optional(),
    /** observation roles, given on the command line as --obs ROLE=L… */
    observations: z.array(name('observation role')).min(1),
    parameters: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'parameter names: letters, digits, "_"'), ParameterSchema).default({}),
    steps: z.array(StepSchema).min(1),
  })
  .strict();
export type Definition = z.infer<typeof DefinitionSchema>;

const PARAM_REF = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Parses and checks a definition; every problem in one error, with where it is. */
export function parseDefinition(text: string, file: string): Definition {
  let value: unknown;
  try {
    value = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const e = err as Error & { mark?: { line: number } };
    throw new InputError(`${file} is not valid YAML${e.mark ? ` at line ${e.mark.line + 1}` : ''}: ${e.message.split('\n')[0]}`);
  }
  const parsed = DefinitionSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${describePath(value, i.path)}: ${i.message}`);
    throw definitionError(file, problems);
  }
  const problems = checkDefinition(parsed.data);
  if (problems.length) throw definitionError(file, problems);
  return parsed.data;
}

function definitionError(file: string, problems: string[]): InputError {
  return new InputError(`pipeline definition ${file} is not valid:\n  ${problems.join('\n  ')}`, 'See docs/pipelines.md, "Definitions"; nothing was written.');
}

/** "steps[2] (solve).needs[0].step" rather than "steps.2.needs.0.step". */
function describePath(value: unknown, path: readonly PropertyKey[]): string {
  let out = '';
  let cur: unknown = value;
  for (const key of path) {
    const stepName = typeof key === 'number' && cur && Array.isArray(cur) ? (cur[key] as { name?: unknown } | undefined)?.name : undefined;
    out += typeof key === 'number' ? `[${key}]${typeof stepName === 'string' ? ` (${stepName})` : ''}` : `${out ? '.' : ''}${String(key)}`;
    cur = cur && typeof cur === 'object' ? (cur as Record<PropertyKey, unknown>)[key] : undefined;
  }
  return out || '(definition)';
}

/** What the schema cannot say: references between steps, fan-out rules, parameter references. */
function checkDefinition(d: Definition): string[] {
  const problems: string[] = [];
  const seen = new Map<string, StepDef>();
  for (const [i, s] of d.steps.entries()) {
    const at = `steps[${i}] (${s.name})`;
    if (seen.has(s.name)) problems.push(`${at}: a second step named ${s.name}`);
    if (!d.observations.includes(s.observation)) problems.push(`${at}.observation: ${s.observation} is not one of the observations (${d.observations.join(', ')})`);
    if ((s.command === undefined) === (s.cwl === undefined)) problems.push(`${at}: give either command or cwl`);
    if (s.per === 'group' && s.group === undefined) problems.push(`${at}.group: per: group needs group: N (subbands per token)`);
    if (s.per !== 'group' && s.group !== undefined) problems.push(`${at}.group: only for per: group`);
    if (s.needs.length === 0 && !s.surls) problems.push(`${at}: a step without needs must take its observation's files (surls: true)`);
    for (const [j, n] of s.needs.entries()) {
      const up = seen.get(n.step);
      if (!up) {
        const later = d.steps.some((x) => x.name === n.step);
        problems.push(`${at}.needs[${j}]: ${later ? `step ${n.step} comes later; steps are listed upstream first` : `no step named ${n.step}`}`);
        continue;
      }
      if (n.take !== 'all' && s.per === 'observation') problems.push(`${at}.needs[${j}].take: a per-observation step takes all of ${n.step}`);
      if (n.take === 'subband' && (s.per !== 'subband' || up.per !== 'subband')) problems.push(`${at}.needs[${j}].take: subband pairs per-subband steps; use group or all`);
      if (n.take === 'group' && s.per !== 'group') problems.push(`${at}.needs[${j}].take: group is for per: group steps`);
      if (n.take !== 'all' && up.per === 'observation') problems.push(`${at}.needs[${j}].take: ${n.step} is per observation; take all of it`);
    }
    for (const text of [s.command, s.results, ...Object.values(s.cwl?.job ?? {}).filter((v): v is string => typeof v === 'string')]) {
      for (const ref of paramRefs(text ?? '')) if (!(ref in d.parameters)) problems.push(`${at}: {{${ref}}} names no parameter (declared: ${Object.keys(d.parameters).join(', ') || 'none'})`);
    }
    seen.set(s.name, s);
  }
  for (const [p, def] of Object.entries(d.parameters)) {
    if (def.default !== undefined) {
      const problem = typeProblem(def.type, def.default);
      if (problem) problems.push(`parameters.${p}.default: ${problem}`);
    }
  }
  return problems;
}

function paramRefs(text: string): string[] {
  return [...text.matchAll(PARAM_REF)].map((m) => m[1]!);
}

function typeProblem(type: ParameterType, v: ParameterValue): string | null {
  if (type === 'int') return typeof v === 'number' && Number.isInteger(v) ? null : `must be a whole number, not ${JSON.stringify(v)}`;
  if (type === 'float') return typeof v === 'number' ? null : `must be a number, not ${JSON.stringify(v)}`;
  if (type === 'bool') return typeof v === 'boolean' ? null : `must be true or false, not ${JSON.stringify(v)}`;
  return typeof v === 'string' ? null : `must be a string, not ${JSON.stringify(v)}`;
}

/** Parameter values: defaults, overridden by --set name=value (text converted to the declared type). */
export function resolveParameters(d: Definition, sets: readonly string[]): Record<string, ParameterValue> {
  const values: Record<string, ParameterValue> = {};
  const problems: string[] = [];
  for (const [p, def] of Object.entries(d.parameters)) if (def.default !== undefined) values[p] = def.default;
  for (const s of sets) {
    const eq = s.indexOf('=');
    const key = eq > 0 ? s.slice(0, eq) : '';
    const def = d.parameters[key];
    if (!def) {
      problems.push(`--set ${s}: ${key ? `${d.name} has no parameter ${key}` : 'give name=value'} (parameters: ${Object.keys(d.parameters).join(', ') || 'none'})`);
      continue;
    }
    const converted = convert(def.type, s.slice(eq + 1));
    if (typeof converted === 'object') problems.push(`--set ${s}: ${converted.problem}`);
    else values[key] = converted;
  }
  for (const p of Object.keys(d.parameters)) if (!(p in values)) problems.push(`parameter ${p} has no default: give --set ${p}=…`);
  if (problems.length) throw new InputError(problems.join('\n  '), 'Nothing was written.');
  return values;
}

function convert(type: ParameterType, text: string): ParameterValue | { problem: string } {
  if (type === 'string') return text;
  if (type === 'bool') return text === 'true' ? true : text === 'false' ? false : { problem: 'must be true or false' };
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n)) return { problem: `must be a number` };
  if (type === 'int' && !Number.isInteger(n)) return { problem: 'must be a whole number' };
  return n;
}

/** Replaces {{param}} in text. */
export function substitute(text: string, values: Record<string, ParameterValue>): string {
  return text.replace(PARAM_REF, (_, p: string) => String(values[p]));
}

/** A job-order value: "{{p}}" alone gives p's typed value, other strings are substituted, the rest kept. */
export function jobValue(v: unknown, values: Record<string, ParameterValue>): unknown {
  if (typeof v !== 'string') return v;
  const whole = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$/.exec(v);
  return whole ? values[whole[1]!] : substitute(v, values);
}

/** The steps downstream of `from` (itself included), in definition order. */
export function downstreamOf(d: Definition, from: string): string[] {
  const picked = new Set([from]);
  for (const s of d.steps) if (s.needs.some((n) => picked.has(n.step))) picked.add(s.name);
  return d.steps.filter((s) => picked.has(s.name)).map((s) => s.name);
}
