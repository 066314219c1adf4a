/** The step's view of its token: scratch directories, environment variables, token JSON and attachments on disk. */
import fs from 'node:fs';
import path from 'node:path';
import type { TokenDb } from '../server/lease.js';
import type { Token } from '../server/token.js';

export interface ScratchDirs {
  scratchDir: string;
  inputDir: string;
  outputDir: string;
  tokenFile: string;
  stdoutFile: string;
  stderrFile: string;
}

export function makeScratch(workdir: string, token: Token, claimId: string): ScratchDirs {
  const name = `${token._id.replace(/[^A-Za-z0-9_.-]/g, '_')}.${token.attempts}.${claimId.slice(0, 8)}`;
  const scratchDir = path.join(workdir, 'scratch', name);
  const inputDir = path.join(scratchDir, 'input');
  const outputDir = path.join(scratchDir, 'output');
  fs.mkdirSync(inputDir, { recursive: true });
  fs.mkdirSync(outputDir, { recursive: true });
  return {
    scratchDir,
    inputDir,
    outputDir,
    tokenFile: path.join(scratchDir, 'token.json'),
    stdoutFile: path.join(scratchDir, 'step.out'),
    stderrFile: path.join(scratchDir, 'step.err'),
  };
}

/**
 * The environment the step sees: the agent's own, minus tokenpool's settings (they can carry the
 * database password), plus the token's fields.
 */
export function stepEnv(token: Token, dirs: ScratchDirs, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !k.startsWith('TOKENPOOL_')) env[k] = v;
  return {
    ...env,
    TOKEN_ID: token._id,
    OBSID: token.obsid ?? '',
    STEP: token.step,
    SUBBAND: token.subbands.length ? String(token.subbands[0]) : '',
    SUBBANDS: token.subbands.join(','),
    ATTEMPT: String(token.attempts),
    TOKEN_FILE: dirs.tokenFile,
    // PiCaS's input line of an adopted token: what picasclient's process_task.sh takes as $1.
    TOKEN_INPUT: typeof token.input === 'string' ? token.input : '',
    INPUT_DIR: dirs.inputDir,
    OUTPUT_DIR: dirs.outputDir,
    SCRATCH_DIR: dirs.scratchDir,
  };
}

/** Log attachments the agent itself adds; never handed to the step. */
export const isLogAttachment = (name: string) => name.startsWith('logs_');

/** Writes token.json and the token's attachments (parsets, SURL lists) into the scratch directory. */
export async function writeTokenFiles(db: TokenDb, token: Token, dirs: ScratchDirs): Promise<string[]> {
  fs.writeFileSync(dirs.tokenFile, JSON.stringify(token, null, 2));
  const written: string[] = [];
  for (const name of Object.keys(token._attachments ?? {})) {
    if (isLogAttachment(name)) continue;
    const safe = path.basename(name);
    if (!safe || safe === '.' || safe === '..' || safe === 'token.json') continue;
    const data = await db.attachment.get(token._id, name);
    fs.writeFileSync(path.join(dirs.scratchDir, safe), data);
    written.push(safe);
  }
  return written;
}

/** The last `limit` bytes of a file (the step's output can be huge; the token keeps only the tail). */
export function tail(file: string, limit: number): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return Buffer.alloc(0);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const length = Math.min(size, limit);
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, size - length);
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}
