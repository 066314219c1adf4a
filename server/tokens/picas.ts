/**
 * Turning one PiCaS-format token (picasclient's or GRID_LRT's) into a tokenpool token in place:
 * PiCaS's state (lock/done/exit_code) becomes `status`, GRID_LRT's OBSID/PIPELINE_STEP/STARTSB (or
 * the user's defaults) become obsid/step/subbands, the input URLs (the token's `input` or its
 * attached srm.txt) become input files. A token that names no observation (picasclient's) gets
 * obsid null rather than an invented one, and its input line stays in `input`, where PiCaS scripts
 * read it. Every field is kept; a value that had to change form is kept as it was under `picas`, so
 * nothing the PiCaS scripts wrote is lost.
 */
import { effectiveStatus, exitCode as exitCodeOf } from '../effective-status.js';
import { parseSurl, type Surl } from '../surl.js';
import {
  DEFAULT_MAX_ATTEMPTS,
  PicasTokenSchema,
  validateToken,
  describeProblems,
  type InputFile,
  type LtaSite,
  type Token,
  type TokenStatus,
} from '../token.js';

export interface AdoptDefaults {
  /** for tokens without OBSID and without LOFAR SURLs (else their obsid is null) */
  obsid?: string;
  /** for tokens without PIPELINE_STEP */
  step?: string;
  /** replaces the token's own command */
  command?: string;
  /** take over locked tokens (their PiCaS pilot must be gone) as todo */
  includeLocked?: boolean;
}

export type Adoption =
  | { kind: 'adopt'; token: Token; from: string }
  | { kind: 'skip'; reason: string }
  | { kind: 'problem'; field: string; message: string };

/** GRID_LRT attaches a token's SURLs as srm.txt. */
export const SRM_ATTACHMENT = 'srm.txt';

type Doc = Record<string, unknown>;

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\/\S+$/i;
const STEP = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export function adoptPicasToken(doc: Doc, defaults: AdoptDefaults, now: number, srmText: string | null): Adoption {
  const checked = PicasTokenSchema.safeParse(doc);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    return { kind: 'problem', field: issue.path.join('.') || '(token)', message: issue.message };
  }
  const lock = doc.lock as number;
  const done = doc.done as number;
  const exitCode = exitCodeOf(doc.exit_code);
  const errors = errorList(doc.error, now);

  const was = effectiveStatus(doc) as 'todo' | 'locked' | 'done' | 'error';
  if (was === 'locked' && !defaults.includeLocked) {
    const by = typeof doc.hostname === 'string' && doc.hostname ? ` by ${doc.hostname}` : '';
    return { kind: 'skip', reason: `locked${by} since ${new Date(lock * 1000).toISOString()}: a PiCaS pilot may still work on it (--include-locked takes it over)` };
  }

  const files = inputFiles(srmText !== null ? srmText.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#')) : doc.input);
  // picasclient's input line ("echo 'this is token A'") stays where PiCaS scripts read it.
  const input = srmText === null && typeof doc.input === 'string' && files.length === 0 ? doc.input : files;
  const surls = files.map((f, i) => parseSurl(f.url, i + 1)).filter((s): s is Surl => typeof s !== 'string');

  const obsid = obsidOf(doc, surls, defaults);
  if (obsid !== null && typeof obsid !== 'string') return obsid;
  const step = stepOf(doc, defaults);
  if (typeof step !== 'string') return step;
  let command: string | null = null;
  if (defaults.command !== undefined) command = defaults.command;
  else if (typeof doc.command === 'string') command = doc.command;
  else if (doc.command !== undefined && doc.command !== null) return { kind: 'problem', field: 'command', message: 'must be a string (or give --command)' };

  const status: TokenStatus = was === 'locked' ? 'todo' : was;
  const takenOver = was === 'locked';
  // PiCaS's error marks (99, -1) are no times.
  const end = done > 0 && done !== 99 ? done : (errors.at(-1)?.time ?? now);
  const fields: Omit<Token, '_id' | 'type'> = {
    lock: status === 'todo' ? 0 : lock > 0 && lock !== 99 ? lock : end,
    done: status === 'todo' ? 0 : end,
    hostname: takenOver || typeof doc.hostname !== 'string' ? '' : doc.hostname,
    scrub_count: ((doc.scrub_count as number | undefined) ?? 0) + (takenOver ? 1 : 0),
    exit_code: status === 'done' ? 0 : status === 'error' ? exitCode : null,
    input,
    output: [],
    error: errors,
    status,
    obsid,
    step,
    subbands: subbandsOf(doc, surls),
    site: siteOf(surls),
    command,
    image: null,
    results: null,
    overwrite: false,
    priority: 0,
    requirements: typeof doc.cores === 'number' && Number.isInteger(doc.cores) && doc.cores > 0 ? { cores: doc.cores } : {},
    attempts: 0,
    max_attempts: DEFAULT_MAX_ATTEMPTS,
    lease: null,
    history: [],
    reason: reasonFor(was, exitCode, errors, doc),
    times: { [status]: status === 'todo' ? now : end },
    created: now,
    updated: now,
  };

  // Keep every replaced value as it was (GRID_LRT's own status and times, PiCaS's free-form input/output, …).
  const replaced: Doc = typeof doc.picas === 'object' && doc.picas !== null ? { ...(doc.picas as Doc) } : {};
  for (const [key, value] of Object.entries(fields)) {
    if (doc[key] !== undefined && JSON.stringify(doc[key]) !== JSON.stringify(value)) replaced[key] = doc[key];
  }
  const token = { ...doc, ...fields, ...(Object.keys(replaced).length ? { picas: replaced } : {}) } as Token;
  const valid = validateToken(token);
  if (!valid.ok) return { kind: 'problem', field: valid.problems[0]!.field, message: describeProblems(valid.problems) };
  return { kind: 'adopt', token, from: was };
}

/** picasclient's entries are {time, message?, exception?}; tokenpool's need both time and message. */
function errorList(v: unknown, now: number): Token['error'] {
  if (!Array.isArray(v)) return [];
  return v.map((e: Doc) => ({
    ...e,
    time: typeof e.time === 'number' && Number.isInteger(e.time) && e.time >= 0 ? e.time : now,
    message: typeof e.message === 'string' ? e.message : typeof e.exception === 'string' ? e.exception : '',
  }));
}

/** Input files from URLs (a string of them, a list of strings or {url} objects); anything else is not file input. */
function inputFiles(v: unknown): InputFile[] {
  const items = typeof v === 'string' ? v.split(/\s+/).filter(Boolean) : Array.isArray(v) ? v : [];
  const files: InputFile[] = [];
  for (const item of items) {
    if (typeof item === 'string' && URL_LIKE.test(item)) files.push({ url: item });
    else if (item && typeof item === 'object' && typeof (item as Doc).url === 'string' && URL_LIKE.test((item as Doc).url as string)) {
      const { url, adler32, size } = item as InputFile;
      files.push({ url, ...(typeof adler32 === 'string' && /^[0-9a-f]{8}$/.test(adler32) ? { adler32 } : {}), ...(Number.isInteger(size) && size! >= 0 ? { size } : {}) });
    } else return []; // e.g. picasclient's input line "echo hello": the step reads it from token.json (picas.input)
  }
  return files;
}

/** null when nothing names an observation: the token is not LOFAR work, and adopt invents none. */
function obsidOf(doc: Doc, surls: readonly Surl[], defaults: AdoptDefaults): string | null | Adoption {
  if (doc.OBSID !== undefined) {
    const m = /^L?(\d+)$/.exec(String(doc.OBSID).trim());
    if (!m || (typeof doc.OBSID !== 'string' && typeof doc.OBSID !== 'number')) return { kind: 'problem', field: 'OBSID', message: `${JSON.stringify(doc.OBSID)} is not an observation id (like L229507)` };
    return `L${m[1]}`;
  }
  const named = [...new Set(surls.map((s) => s.obsid))];
  if (named.length > 1) return { kind: 'problem', field: 'input', message: `names several observations (${named.join(', ')}); a token is one observation` };
  if (named.length === 1) return named[0]!;
  return defaults.obsid ?? null;
}

function stepOf(doc: Doc, defaults: AdoptDefaults): string | Adoption {
  if (doc.PIPELINE_STEP !== undefined) {
    if (typeof doc.PIPELINE_STEP !== 'string' || !STEP.test(doc.PIPELINE_STEP)) {
      return { kind: 'problem', field: 'PIPELINE_STEP', message: `${JSON.stringify(doc.PIPELINE_STEP)} is not a step name (letters, digits, "_", "." or "-")` };
    }
    return doc.PIPELINE_STEP;
  }
  if (defaults.step) return defaults.step;
  return { kind: 'problem', field: 'step', message: 'missing: the token has no PIPELINE_STEP field; give --step' };
}

function subbandsOf(doc: Doc, surls: readonly Surl[]): number[] {
  if (surls.length) return [...new Set(surls.map((s) => s.subband))].sort((a, b) => a - b);
  const start = typeof doc.STARTSB === 'number' ? doc.STARTSB : typeof doc.STARTSB === 'string' && /^\d+$/.test(doc.STARTSB) ? Number(doc.STARTSB) : null;
  return start !== null && Number.isInteger(start) && start >= 0 ? [start] : [];
}

function siteOf(surls: readonly Surl[]): LtaSite | null {
  const sites = new Set(surls.map((s) => s.site));
  return sites.size === 1 ? [...sites][0]! : null;
}

function reasonFor(was: string, exitCode: number | null, errors: Token['error'], doc: Doc): string | null {
  if (was === 'locked') return `adopted from PiCaS: taken over from ${typeof doc.hostname === 'string' && doc.hostname ? doc.hostname : 'a pilot'} (was locked)`;
  if (was !== 'error') return null;
  const last = errors.at(-1)?.message;
  return `adopted from PiCaS in error: ${last || (exitCode !== null ? `exit code ${exitCode}` : 'no exit code')}`;
}
