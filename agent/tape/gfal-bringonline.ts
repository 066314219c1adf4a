/**
 * Tape staging through gfal2's bring-online (gfal-bringonline): asking again for a file that is
 * already online is cheap and answers READY, so each round simply asks for all files and reads
 * the per-file answers.
 */
import { execa, type ExecaError } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findExecutable } from '../node/which.js';

export type FileState = { state: 'ready' } | { state: 'queued' } | { state: 'failed'; message: string };

export interface BringOnlineOptions {
  /** How long the storage keeps the files pinned on disk */
  pinLifetimeS: number;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

export async function bringOnline(surls: string[], opts: BringOnlineOptions): Promise<Map<string, FileState>> {
  if (!findExecutable('gfal-bringonline')) {
    throw new Error('gfal-bringonline is not installed: install gfal2-util-scripts and gfal2-plugin-srm (or use the LTA stager with --lta-url)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-bringonline-'));
  const list = path.join(dir, 'surls.txt');
  fs.writeFileSync(list, surls.join('\n') + '\n');
  const env = opts.env.GFAL_PYTHONBIN || !fs.existsSync('/usr/bin/python3') ? opts.env : { ...opts.env, GFAL_PYTHONBIN: '/usr/bin/python3' };
  let output: string;
  try {
    // --polling-timeout 1: one poll after the request, which turns already-online files into READY.
    const r = await execa('gfal-bringonline', ['--pin-lifetime', String(opts.pinLifetimeS), '--polling-timeout', '1', '--from-file', list], {
      env,
      all: true,
      reject: false,
      cancelSignal: opts.signal,
      stdin: 'ignore',
    });
    output = String(r.all ?? '');
    if (r.exitCode !== 0 && !/QUEUED|READY|FAILED/.test(output)) {
      throw new Error(`gfal-bringonline failed: ${output.trim().split('\n').pop() ?? `exit ${r.exitCode}`}`);
    }
  } catch (err) {
    if ((err as ExecaError).isCanceled) throw new Error('gfal-bringonline: cancelled');
    throw err;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return parseBringOnline(output, surls);
}

/** The last word on each SURL wins: QUEUED on the request, READY or FAILED on the poll. */
export function parseBringOnline(output: string, surls: readonly string[]): Map<string, FileState> {
  const states = new Map<string, FileState>(surls.map((s) => [s, { state: 'queued' }]));
  for (const line of output.split('\n')) {
    const failed = /^(\S+) => FAILED: (.*)$/.exec(line.trim());
    if (failed && states.has(failed[1]!)) states.set(failed[1]!, { state: 'failed', message: failed[2]! });
    const plain = /^(\S+) (QUEUED|READY)$/.exec(line.trim());
    if (plain && states.has(plain[1]!)) states.set(plain[1]!, { state: plain[2] === 'READY' ? 'ready' : 'queued' });
  }
  return states;
}
