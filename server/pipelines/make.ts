/**
 * What `pipeline run` gathers before anything is written: the definition and SURL lists from disk,
 * the git commit the definition comes from, what identifies each image and CWL file. Every problem
 * is an InputError, so that a bad run writes nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { InputError } from '../errors.js';
import { nowSeconds } from '../token.js';
import { parseDefinition, resolveParameters } from './definition.js';
import { planRun, sha256, type RunPlan } from './plan.js';
import type { ImageRecord, RunDoc } from './run.js';

export interface RunRequest {
  file: string;
  /** ROLE=L… */
  obs: readonly string[];
  /** ROLE=FILE */
  surls: readonly string[];
  /** NAME=VALUE */
  sets: readonly string[];
  staging: boolean;
}

export async function prepareRun(req: RunRequest): Promise<RunPlan> {
  const text = readFile(req.file, 'pipeline definition');
  const definition = parseDefinition(text, req.file);
  const parameters = resolveParameters(definition, req.sets);
  const observations = pairs(req.obs, '--obs', 'calibrator=L229507');
  const surls = Object.fromEntries(Object.entries(pairs(req.surls, '--surls', 'target=L229587.surls')).map(([role, f]) => [role, readFile(f, `SURL list of ${role}`)]));
  const images: Record<string, ImageRecord> = {};
  for (const s of definition.steps) if (s.image && !images[s.image]) images[s.image] = await identifyImage(s.image);
  const cwl: Record<string, { workflow: string; sha256: string | null }> = {};
  for (const s of definition.steps) {
    if (!s.cwl) continue;
    const workflow = /^[a-z]+:\/\//i.test(s.cwl.workflow) ? s.cwl.workflow : path.resolve(path.dirname(req.file), s.cwl.workflow);
    if (!workflow.includes('://') && !fs.existsSync(workflow)) throw new InputError(`step ${s.name}: CWL file ${workflow} not found`, 'cwl.workflow is relative to the definition; the agents\' nodes must reach the same path (shared file system, CVMFS) or give a URL.');
    cwl[s.name] = { workflow, sha256: workflow.includes('://') ? null : sha256(fs.readFileSync(workflow)) };
  }
  return planRun({
    definition,
    definitionText: text,
    definitionFile: path.resolve(req.file),
    ...gitOf(req.file),
    observations,
    surls,
    parameters,
    images,
    cwl,
    staging: req.staging,
    now: nowSeconds(),
  });
}

function readFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function pairs(list: readonly string[], flag: string, example: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new InputError(`${flag} ${item}: give ROLE=VALUE, e.g. ${flag} ${example}`);
    const role = item.slice(0, eq);
    if (role in out) throw new InputError(`${flag} names ${role} twice`);
    out[role] = item.slice(eq + 1);
  }
  return out;
}

/**
 * An image file is identified by its sha256; a docker:// reference pinned by digest by that digest.
 * A directory (an unpacked image on CVMFS) or a path not reachable here gets no id: the agent records
 * what it ran on each token (software.image).
 */
export async function identifyImage(image: string): Promise<ImageRecord> {
  const digest = /@(sha256:[0-9a-f]{64})$/.exec(image);
  if (digest) return { path: image, id: digest[1]! };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(image);
  } catch {
    return { path: image, id: null };
  }
  if (!stat.isFile()) return { path: image, id: null };
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(image)) hash.update(chunk as Buffer);
  return { path: image, id: `sha256:${hash.digest('hex')}` };
}

/** The commit of the checkout holding the definition, and whether the file differs from it. */
function gitOf(file: string): { git?: RunDoc['definition']['git'] } {
  const dir = path.dirname(path.resolve(file));
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const commit = git('rev-parse', 'HEAD');
    const rel = git('ls-files', '--full-name', '--', path.basename(file));
    if (!rel) return {};
    const dirty = git('status', '--porcelain', '--', path.basename(file)) !== '';
    return { git: { commit, path: rel, dirty } };
  } catch {
    return {};
  }
}
