/**
 * The token: one unit of work in the pool. PiCaS's core fields keep PiCaS's meaning so that PiCaS
 * views and tools work on our tokens; the rest carries what the agent, stager and status need.
 * docs/tokens.md is the prose version of this file.
 */
// A namespace import lets a bundler leave out what is unused (zod's ~40 locales: 350 KB of the pilot bundle).
import * as z from 'zod';

import { TOKEN_STATUSES, type TokenStatus } from './statuses.js';

export { TOKEN_STATUSES, type TokenStatus };

/** Phases of a claimed token: the lease is held during these. */
export const ACTIVE_STATUSES: readonly TokenStatus[] = ['locked', 'downloading', 'running', 'uploading'];

export const LTA_SITES = ['sara', 'juelich', 'poznan'] as const;
export type LtaSite = (typeof LTA_SITES)[number];

const unixTime = z.number().int().nonnegative();

export const InputFileSchema = z.object({
  url: z.string().min(1),
  /** 8 hex digits, as the grid writes adler32 */
  adler32: z.string().regex(/^[0-9a-f]{8}$/).optional(),
  size: z.number().int().nonnegative().optional(),
  /** the credential its storage takes (the node must have one before it claims): a reference, never the secret */
  auth: z.enum(['macaroon', 'bearer', 'proxy']).optional(),
});
export type InputFile = z.infer<typeof InputFileSchema>;

export const OutputFileSchema = z.object({
  url: z.string().min(1),
  size: z.number().int().nonnegative(),
  adler32: z.string().regex(/^[0-9a-f]{8}$/),
  /** the attempt whose upload is what lies at `url` */
  attempt: z.number().int().positive().optional(),
});
export type OutputFile = z.infer<typeof OutputFileSchema>;

/**
 * One upload an attempt made to its results location, recorded on the token (lease-guarded) before the
 * upload is published under its final name: what lets a later attempt of the same token recognise the
 * data at that name as its own (docs/worker-node.md, "Stage-out").
 */
export const UploadSchema = z.object({
  url: z.string().min(1),
  size: z.number().int().nonnegative(),
  adler32: z.string().regex(/^[0-9a-f]{8}$/),
  attempt: z.number().int().positive(),
  claim_id: z.string().min(1),
  time: unixTime,
});
export type Upload = z.infer<typeof UploadSchema>;

export const LeaseSchema = z.object({
  owner: z.string().min(1),
  claim_id: z.string().min(1),
  /** Unix time after which any agent may reclaim the token */
  expires: unixTime,
  heartbeat: unixTime,
});
export type Lease = z.infer<typeof LeaseSchema>;

export const AttemptSchema = z.object({
  attempt: z.number().int().positive(),
  claim_id: z.string(),
  owner: z.string(),
  hostname: z.string(),
  batch_job_id: z.string().nullable(),
  start: unixTime,
  end: unixTime.nullable(),
  exit_code: z.number().int().nullable(),
  /** "done", "exit code 1", "lease expired", "preempted", "checksum mismatch", … */
  reason: z.string(),
  /** seconds spent per phase (downloading, running, uploading) */
  phases: z.record(z.string(), z.number().nonnegative()).optional(),
});
export type Attempt = z.infer<typeof AttemptSchema>;

export const RequirementsSchema = z.object({
  cores: z.number().int().positive().optional(),
  memory_mb: z.number().int().positive().optional(),
  /** hard limit on the step's run time: the process group is killed after it */
  time_limit_s: z.number().int().positive().optional(),
  /** expected run time: an agent does not claim the token when less time than this is left */
  expected_s: z.number().int().positive().optional(),
});
export type Requirements = z.infer<typeof RequirementsSchema>;

/**
 * A pipeline token's place in its run (server/pipelines/): the upstream tokens it needs, the
 * dependents it feeds, and what its release recorded. docs/pipelines.md, "Tokens of a run".
 */
export const PipelineLinkSchema = z
  .object({
    run: z.string().min(1),
    step: z.string().min(1),
    /** sha256 of the pipeline definition the run was made from */
    definition: z.string().regex(/^[0-9a-f]{64}$/),
    needs: z.array(z.object({ step: z.string().min(1), tokens: z.array(z.string().min(1)), min_fraction: z.number().gt(0).max(1) })),
    feeds: z.array(z.string().min(1)),
    /** how many entries at the head of `input` are the token's own files; upstream outputs follow them once released */
    own_inputs: z.number().int().nonnegative(),
    /** upstream tokens that failed for good and keep this token from running */
    blocked_by: z.array(z.string()).optional(),
    /** upstream tokens a min_fraction release went on without */
    missing: z.array(z.string()).optional(),
    released: unixTime.optional(),
  })
  .catchall(z.unknown());
export type PipelineLink = z.infer<typeof PipelineLinkSchema>;

export const TokenSchema = z
  .object({
    _id: z.string().min(1).regex(/^[^_]/, 'must not start with "_"'),
    _rev: z.string().optional(),
    _attachments: z.record(z.string(), z.unknown()).optional(),
    type: z.literal('token'),
    // PiCaS core
    lock: unixTime,
    done: unixTime,
    hostname: z.string(),
    scrub_count: z.number().int().nonnegative(),
    exit_code: z.number().int().nullable(),
    /** files to stage in; or, on a token adopted from PiCaS, PiCaS's input line (the step gets it as $TOKEN_INPUT) */
    input: z.union([z.array(InputFileSchema), z.string()]),
    output: z.array(OutputFileSchema),
    /** every upload this token's attempts made, before publishing (absent until the first) */
    stage_out_uploads: z.array(UploadSchema).optional(),
    /** PiCaS-style error log: one entry per failure message */
    error: z.array(z.object({ time: unixTime, message: z.string() })),
    // tokenpool
    status: z.enum(TOKEN_STATUSES),
    /** null: not a LOFAR observation (a token adopted from PiCaS that names none) */
    obsid: z.string().regex(/^L\d+$/, 'must look like L229507').nullable(),
    step: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "." or "-"'),
    subbands: z.array(z.number().int().nonnegative()),
    site: z.enum(LTA_SITES).nullable(),
    command: z.string().nullable(),
    image: z.string().nullable(),
    /** stage-out location template, e.g. ${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar */
    results: z.string().nullable(),
    overwrite: z.boolean(),
    priority: z.number().int(),
    requirements: RequirementsSchema,
    attempts: z.number().int().nonnegative(),
    max_attempts: z.number().int().positive(),
    lease: LeaseSchema.nullable(),
    history: z.array(AttemptSchema),
    /** why the token is in error (or was last put back) */
    reason: z.string().nullable(),
    /** Unix time each status was last entered */
    times: z.partialRecord(z.enum(TOKEN_STATUSES), unixTime),
    created: unixTime,
    updated: unixTime,
    pipeline: PipelineLinkSchema.optional(),
  })
  // Batch-system ids (slurm_job_id, dirac_job_id, …), host facts, provenance: kept, not checked.
  .catchall(z.unknown());

export type Token = z.infer<typeof TokenSchema>;

/**
 * Fields only tokenpool writes. A type "token" document with none of them is a PiCaS-format token
 * (picasclient's or GRID_LRT's: lock/done/hostname/… and free-form fields, GRID_LRT's own `status`
 * values included): the pool accepts it with PiCaS's rules, and `tokens adopt` upgrades it.
 */
export const TOKENPOOL_FIELDS = ['obsid', 'step', 'subbands', 'attempts', 'max_attempts', 'lease', 'history'] as const;

export function isPicasToken(doc: unknown): boolean {
  if (doc === null || typeof doc !== 'object') return false;
  const d = doc as Record<string, unknown>;
  return d.type === 'token' && TOKENPOOL_FIELDS.every((f) => d[f] === undefined);
}

/**
 * PiCaS's marks of a failed task, set on lock and done alike: 99 (picasclient's Task.error since late
 * 2024) and -1 (older picasclient and the GRID tools). Neither is a real Unix time.
 */
export const PICAS_ERROR_MARKS: readonly number[] = [99, -1];

const picasTime = z.number().int().min(-1);

/** What the pool checks on a PiCaS-format token: PiCaS's core fields sane, everything else free (lock/done: 0, a Unix time, 99 or -1). */
export const PicasTokenSchema = z
  .object({
    _id: z.string().min(1).regex(/^[^_]/, 'must not start with "_"'),
    type: z.literal('token'),
    lock: picasTime,
    done: picasTime,
    hostname: z.string().optional(),
    scrub_count: z.number().int().nonnegative().optional(),
    /** picasclient writes integers; other tools "" or a number as text */
    exit_code: z.union([z.number().int(), z.null(), z.string().regex(/^(-?\d+)?$/, 'must be an integer, "" or null')]).optional(),
    error: z.array(z.record(z.string(), z.unknown())).optional(),
  })
  .catchall(z.unknown());

/** Fields a creator may give; everything else has a default. */
export interface NewToken {
  obsid: string;
  step: string;
  subbands: number[];
  site?: LtaSite | null;
  input?: InputFile[];
  command?: string | null;
  image?: string | null;
  results?: string | null;
  overwrite?: boolean;
  priority?: number;
  requirements?: Requirements;
  max_attempts?: number;
  status?: 'todo' | 'staging' | 'waiting';
  /** free-form extra fields (parset name, pipeline parameters) */
  extra?: Record<string, unknown>;
}

export const DEFAULT_MAX_ATTEMPTS = 3;

export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** Deterministic id, so that adding the same work twice is idempotent: L229507_cal1_SB100 or L229507_cal1_SB100-109. */
export function tokenId(obsid: string, step: string, subbands: readonly number[]): string {
  if (subbands.length === 0) return `${obsid}_${step}`;
  const sorted = [...subbands].sort((a, b) => a - b);
  const first = pad3(sorted[0]!);
  const last = pad3(sorted[sorted.length - 1]!);
  return first === last ? `${obsid}_${step}_SB${first}` : `${obsid}_${step}_SB${first}-${last}`;
}

function pad3(n: number): string {
  return String(n).padStart(3, '0');
}

export function newToken(spec: NewToken, now = nowSeconds()): Token {
  const status = spec.status ?? 'todo';
  return {
    ...spec.extra,
    _id: tokenId(spec.obsid, spec.step, spec.subbands),
    type: 'token',
    lock: 0,
    done: 0,
    hostname: '',
    scrub_count: 0,
    exit_code: null,
    input: spec.input ?? [],
    output: [],
    error: [],
    status,
    obsid: spec.obsid,
    step: spec.step,
    subbands: [...spec.subbands].sort((a, b) => a - b),
    site: spec.site ?? null,
    command: spec.command ?? null,
    image: spec.image ?? null,
    results: spec.results ?? null,
    overwrite: spec.overwrite ?? false,
    priority: spec.priority ?? 0,
    requirements: spec.requirements ?? {},
    attempts: 0,
    max_attempts: spec.max_attempts ?? DEFAULT_MAX_ATTEMPTS,
    lease: null,
    history: [],
    reason: null,
    times: { [status]: now },
    created: now,
    updated: now,
  };
}

export interface TokenProblem {
  field: string;
  message: string;
}

/** Runtime validation: every problem with its field path, for error messages that say what to fix. */
export function validateToken(doc: unknown): { ok: true; token: Token } | { ok: false; problems: TokenProblem[] } {
  const parsed = TokenSchema.safeParse(doc);
  if (parsed.success) return { ok: true, token: parsed.data };
  return {
    ok: false,
    problems: parsed.error.issues.map((i) => ({ field: i.path.join('.') || '(token)', message: i.message })),
  };
}

export function describeProblems(problems: readonly TokenProblem[]): string {
  return problems.map((p) => `${p.field}: ${p.message}`).join('; ');
}

/** The PiCaS state a token is in, from PiCaS's fields alone (what the Monitor views compute). */
export function picasState(t: Pick<Token, 'lock' | 'done' | 'exit_code'>): 'todo' | 'locked' | 'done' | 'error' {
  if (t.lock === 0 && t.done === 0) return 'todo';
  if (t.done === 0) return 'locked';
  return t.exit_code === 0 ? 'done' : 'error';
}

/** The files a token stages in: none when its input is a PiCaS input line. */
export function inputFilesOf(t: { input?: Token['input'] }): InputFile[] {
  return Array.isArray(t.input) ? t.input : [];
}

/**
 * Exit codes tokenpool records when the step itself did not produce one (numbers follow the LOFAR
 * grid tools' groups: 1x token/credentials, 2x stage-in, 3x stage-out, 4x software).
 */
export const EXIT = {
  malformedToken: 10,
  credentials: 11,
  downloadFailed: 20,
  checksumMismatch: 21,
  notStaged: 22,
  uploadFailed: 30,
  outputExists: 31,
  imageNotFound: 40,
  /** the scratch directory is full, over quota or read-only: a node problem, the token is given back */
  scratchUnusable: 60,
  leaseExpired: 50,
  timeLimit: 124,
} as const;
