/**
 * CWL steps (docs/pipelines.md, "CWL steps"): the token names a CWL CommandLineTool or Workflow; the
 * agent writes the job order (the staged inputs as CWL File/Directory objects, the step's values),
 * runs cwltool (or toil-cwl-runner) in the token's scratch directory with --outdir the output
 * directory, so that stage-out uploads exactly the files of CWL's output object, and records that
 * object on the token with each file's place in the uploaded result.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as z from 'zod';
import { EXIT, type Token } from '../server/token.js';
import { PhaseError, type CwlContainer, type PhaseContext } from './phases.js';

const CwlTokenSchema = z.object({
  workflow: z.string().min(1),
  runner: z.enum(['cwltool', 'toil-cwl-runner']),
  container: z.enum(['none', 'node']),
  inputs: z.string().min(1).optional(),
  job: z.record(z.string(), z.unknown()),
});
export type CwlToken = z.infer<typeof CwlTokenSchema>;

/** The token's CWL step, or null for a plain command. A malformed one fails the token for good. */
export function cwlOf(token: Token): CwlToken | null {
  if (token.cwl === undefined) return null;
  const parsed = CwlTokenSchema.safeParse(token.cwl);
  if (!parsed.success) throw new PhaseError('malformed token', EXIT.malformedToken, false, `cwl: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Writes job.json and returns the runner's command line; `container` is the node's (null: container none). */
export function cwlCommand(ctx: PhaseContext, cwl: CwlToken, container: CwlContainer | null): { file: string; args: string[] } {
  const job: Record<string, unknown> = { ...cwl.job };
  if (cwl.inputs) {
    job[cwl.inputs] = fs
      .readdirSync(ctx.inputDir, { withFileTypes: true })
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((e) => ({ class: e.isDirectory() ? 'Directory' : 'File', path: path.join(ctx.inputDir, e.name) }));
  }
  const jobFile = path.join(ctx.scratchDir, 'job.json');
  fs.writeFileSync(jobFile, JSON.stringify(job, null, 2));
  // Intermediate files stay in the scratch directory, which the agent removes (not in /tmp).
  const tmp = path.join(ctx.scratchDir, 'cwl-tmp');
  fs.mkdirSync(tmp, { recursive: true });
  const engine = container ? [`--${container.engine}`, ...(container.image ? ['--default-container', container.image] : [])] : ['--no-container'];
  if (cwl.runner === 'toil-cwl-runner') {
    return { file: 'toil-cwl-runner', args: ['--outdir', ctx.outputDir, '--jobStore', path.join(ctx.scratchDir, 'jobstore'), '--workDir', tmp, ...engine, cwl.workflow, jobFile] };
  }
  return { file: 'cwltool', args: ['--outdir', ctx.outputDir, '--tmpdir-prefix', `${tmp}/`, '--tmp-outdir-prefix', `${tmp}/`, ...engine, cwl.workflow, jobFile] };
}

export interface CwlFileRecord {
  class: 'File' | 'Directory';
  /** where it is inside the token's result (the uploaded tar) */
  path: string;
  size?: number;
  checksum?: string;
}

/**
 * CWL's output object (the runner's stdout), each File/Directory given by its path relative to the
 * output directory, i.e. inside the uploaded result.
 */
export function cwlOutputs(stdoutFile: string, outputDir: string): Record<string, unknown> {
  let object: unknown;
  try {
    object = JSON.parse(fs.readFileSync(stdoutFile, 'utf8'));
  } catch (err) {
    throw new PhaseError('bad CWL output', 1, false, `the runner's output object is not JSON: ${(err as Error).message}`);
  }
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (!v || typeof v !== 'object') return v;
    const o = v as Record<string, unknown>;
    if (o.class === 'File' || o.class === 'Directory') {
      const where = typeof o.path === 'string' ? o.path : typeof o.location === 'string' ? decodeURIComponent(o.location.replace(/^file:\/\//, '')) : '';
      const rec: CwlFileRecord = { class: o.class, path: path.relative(outputDir, where) };
      if (typeof o.size === 'number') rec.size = o.size;
      if (typeof o.checksum === 'string') rec.checksum = o.checksum;
      return rec;
    }
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, rewrite(x)]));
  };
  return rewrite(object) as Record<string, unknown>;
}
