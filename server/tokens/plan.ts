/**
 * Turning user input into tokens, before anything is written: SURL lists, JSON/YAML spec files and
 * NDJSON streams all end up as a plan of validated tokens plus every problem found, each with where
 * it is ("line 7", "spec.yaml [2]") so that the whole input is judged first and written only if clean.
 */
import { z } from 'zod';
import { groupSurls, mixingProblems, parseSurl, parseSurlList, type Surl } from '../surl.js';
import {
  describeProblems,
  InputFileSchema,
  newToken,
  RequirementsSchema,
  validateToken,
  type InputFile,
  type NewToken,
  type Token,
} from '../token.js';

export interface Problem {
  where: string;
  message: string;
}

export interface TokenPlan {
  tokens: Token[];
  /** input lines or specs that cannot become tokens (skippable with --skip-invalid) */
  problems: Problem[];
  /** problems that refuse the whole input whatever the flags (e.g. mixed observations) */
  fatal: Problem[];
  /** exact duplicates dropped from the input */
  duplicates: number;
}

/** Token fields given on the command line: defaults for what a spec or list does not say. */
export interface TokenDefaults {
  step?: string;
  group?: number;
  command?: string;
  image?: string;
  results?: string;
  priority?: number;
  maxAttempts?: number;
  status?: 'todo' | 'staging' | 'waiting';
}

const nullableText = z.string().min(1).nullable().optional();
const subbandItem = z.union([z.number().int().nonnegative(), z.string().regex(/^\d+(-\d+)?$/, 'must be a number or a range like "100-109"')]);

/** What a spec (one JSON/YAML object or one NDJSON line) may say; unknown keys are refused to catch typos. */
export const TokenSpecSchema = z
  .object({
    observation: z.string().optional(),
    obsid: z.string().optional(),
    step: z.string().optional(),
    subbands: z.array(subbandItem).optional(),
    surls: z.array(z.string()).optional(),
    input: z.array(InputFileSchema).optional(),
    group: z.number().int().positive().optional(),
    command: nullableText,
    image: nullableText,
    results: nullableText,
    overwrite: z.boolean().optional(),
    priority: z.number().int().optional(),
    max_attempts: z.number().int().positive().optional(),
    requirements: RequirementsSchema.strict().optional(),
    status: z.enum(['todo', 'staging', 'waiting']).optional(),
    /** free-form fields stored on the token (parset name, pipeline parameters) */
    extra: z.record(z.string().regex(/^[^_]/, 'extra field names must not start with "_"'), z.unknown()).optional(),
  })
  .strict();
export type TokenSpec = z.infer<typeof TokenSpecSchema>;

/** A SURL list → one token per `group` consecutive subbands (default 1). */
export function planFromSurlList(text: string, defaults: TokenDefaults, opts: { allowMixed?: boolean } = {}): TokenPlan {
  const parsed = parseSurlList(text);
  const problems: Problem[] = parsed.problems.map((p) => ({ where: `line ${p.line}`, message: p.message }));
  const fatal: Problem[] = opts.allowMixed ? [] : mixingProblems(parsed.surls).map((p) => ({ where: `line ${p.line}`, message: p.message }));
  if (!defaults.step) fatal.push({ where: '--step', message: 'a SURL list needs --step NAME (the pipeline step these tokens run, e.g. cal1)' });
  const plan: TokenPlan = { tokens: [], problems, fatal, duplicates: parsed.duplicates };
  if (fatal.length) return plan;
  for (const group of groupSurls(parsed.surls, defaults.group ?? 1)) {
    const where = group.length === 1 ? `line ${group[0]!.line}` : `lines ${group.map((s) => s.line).join(',')}`;
    addToken(plan, where, fromSurls(group, defaults, {}));
  }
  return plan;
}

/** Specs (from a JSON/YAML file or NDJSON lines) → tokens; a spec is one token unless it sets `group`. */
export function planFromSpecs(specs: readonly { where: string; value: unknown }[], defaults: TokenDefaults): TokenPlan {
  const plan: TokenPlan = { tokens: [], problems: [], fatal: [], duplicates: 0 };
  for (const { where, value } of specs) {
    const parsed = TokenSpecSchema.safeParse(value);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const field = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? '' : '(spec)');
        plan.problems.push({ where, message: `${field ? field + ': ' : ''}${issue.message}` });
      }
      continue;
    }
    const expanded = expandSpec(parsed.data, defaults);
    if (typeof expanded === 'string') plan.problems.push({ where, message: expanded });
    else for (const spec of expanded) addToken(plan, where, spec);
  }
  return plan;
}

function expandSpec(spec: TokenSpec, defaults: TokenDefaults): NewToken[] | string {
  if (spec.obsid && spec.observation && spec.obsid !== spec.observation) return `obsid ${spec.obsid} and observation ${spec.observation} disagree`;
  const obsid = spec.obsid ?? spec.observation;
  const step = spec.step ?? defaults.step;
  if (!step) return 'step: missing (give "step" in the spec or --step NAME)';
  const group = spec.group ?? defaults.group;
  const fields = { ...spec, step };
  if (spec.surls) {
    if (spec.input) return 'give either "surls" or "input", not both';
    const surls: Surl[] = [];
    for (const [i, url] of spec.surls.entries()) {
      const parsed = parseSurl(url.trim(), i + 1);
      if (typeof parsed === 'string') return `surls.${i}: ${parsed}`;
      if (obsid && parsed.obsid !== obsid) return `surls.${i}: observation ${parsed.obsid} differs from ${obsid}`;
      surls.push(parsed);
    }
    const groups = group ? groupSurls(surls, group) : [surls];
    return groups.map((g) => fromSurls(g, defaults, fields));
  }
  if (!obsid) return 'observation: missing (give "observation": "L229507", or "surls")';
  const subbands = expandSubbands(spec.subbands ?? []);
  if (typeof subbands === 'string') return subbands;
  const blocks = group && !spec.input ? alignedBlocks(subbands, group) : [subbands];
  return blocks.map((sb) => tokenFields(obsid, sb, null, spec.input ?? [], defaults, fields));
}

function expandSubbands(items: readonly (number | string)[]): number[] | string {
  const out = new Set<number>();
  for (const [i, item] of items.entries()) {
    if (typeof item === 'number') {
      out.add(item);
      continue;
    }
    const [a, b = a] = item.split('-').map(Number) as [number, number?];
    if (b < a) return `subbands.${i}: range ${item} runs backwards`;
    if (b - a > 10_000) return `subbands.${i}: range ${item} is too long`;
    for (let sb = a; sb <= b; sb++) out.add(sb);
  }
  return [...out].sort((x, y) => x - y);
}

function alignedBlocks(subbands: readonly number[], size: number): number[][] {
  const blocks = new Map<number, number[]>();
  for (const sb of subbands) {
    const k = Math.floor(sb / size);
    blocks.set(k, [...(blocks.get(k) ?? []), sb]);
  }
  return [...blocks.values()];
}

function fromSurls(group: readonly Surl[], defaults: TokenDefaults, spec: Partial<TokenSpec>): NewToken {
  const first = group[0]!;
  const extra = first.project ? { project: first.project, ...spec.extra } : spec.extra;
  return tokenFields(
    first.obsid,
    group.map((s) => s.subband),
    first.site,
    group.map((s): InputFile => ({ url: s.url })),
    defaults,
    { ...spec, extra },
  );
}

function tokenFields(
  obsid: string,
  subbands: number[],
  site: Surl['site'],
  input: InputFile[],
  defaults: TokenDefaults,
  spec: Partial<TokenSpec>,
): NewToken {
  return {
    obsid,
    step: spec.step ?? defaults.step ?? '',
    subbands,
    site,
    input,
    command: spec.command ?? defaults.command ?? null,
    image: spec.image ?? defaults.image ?? null,
    results: spec.results ?? defaults.results ?? null,
    overwrite: spec.overwrite,
    priority: spec.priority ?? defaults.priority,
    max_attempts: spec.max_attempts ?? defaults.maxAttempts,
    requirements: spec.requirements,
    status: spec.status ?? defaults.status,
    extra: spec.extra,
  };
}

const plannedIds = new WeakMap<TokenPlan, Set<string>>();

/** Builds the token, validates it as the pool will, and refuses a second token with the same id. */
function addToken(plan: TokenPlan, where: string, spec: NewToken): void {
  const token = newToken(spec);
  const checked = validateToken(token);
  if (!checked.ok) {
    plan.problems.push({ where, message: `token ${token._id}: ${describeProblems(checked.problems)}` });
    return;
  }
  let ids = plannedIds.get(plan);
  if (!ids) plannedIds.set(plan, (ids = new Set()));
  if (ids.has(token._id)) {
    plan.problems.push({ where, message: `token ${token._id} is produced twice (same observation, step and subbands)` });
    return;
  }
  ids.add(token._id);
  plan.tokens.push(token);
}
