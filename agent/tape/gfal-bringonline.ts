/**
 * Tape staging through gfal2's bring-online (gfal-bringonline), for any storage gfal2 can bring
 * online: SRM, and http(s)/davs through the WLCG Tape REST API. Asking again for a file that is
 * already online is cheap and answers READY, so each round simply asks for all files and reads
 * the per-file answers.
 *
 * What gfal-bringonline (gfal2-util 1.8, gfal2 2.21) prints on stdout, one line per file and pass:
 * `<surl> QUEUED` after the request, then after `Request queued, sleep 1 seconds...` the poll's
 * `<surl> READY` / `<surl> QUEUED` / `<surl> => FAILED: <message>`; the SURL exactly as listed.
 * It exits 0 even when every file failed. A failure of the whole call (storage endpoint
 * unreachable, HTTP 5xx on the stage or poll call, unsupported protocol) is not reported as such:
 * gfal2 copies the one error onto every file.
 */
import { execa, type ExecaError } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findExecutable } from '../node/which.js';

export type FileState = { state: 'ready' } | { state: 'queued' } | { state: 'failed'; message: string };

export interface BringOnlineResult {
  files: Map<string, FileState>;
  /** Set when the call as a whole failed (see callFailure): then no file's state is known */
  callError?: string;
}

export interface BringOnlineOptions {
  /** How long the storage keeps the files pinned on disk (SRM; gfal2 2.21 does not pass it to the Tape REST API) */
  pinLifetimeS: number;
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

export async function bringOnline(surls: string[], opts: BringOnlineOptions): Promise<BringOnlineResult> {
  if (!findExecutable('gfal-bringonline')) {
    throw new Error('gfal-bringonline is not installed: install gfal2-util-scripts and gfal2-plugin-srm or gfal2-plugin-http (or use the LTA stager with --lta-url)');
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
    // Non-zero only when gfal-util itself failed (a GError it did not expect, a Python traceback).
    if (r.exitCode !== 0 && !/ (QUEUED|READY)$| => FAILED: /m.test(output)) {
      throw new Error(`gfal-bringonline failed: ${output.trim().split('\n').pop() ?? `exit ${r.exitCode}`}`);
    }
  } catch (err) {
    if ((err as ExecaError).isCanceled) throw new Error('gfal-bringonline: cancelled');
    throw err;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const files = parseBringOnline(output, surls);
  const callError = callFailure(files);
  return callError === undefined ? { files } : { files, callError };
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

/**
 * gfal2's own wording for a failed call (Tape REST discovery, stage and poll calls, transport,
 * protocol), as opposed to a storage's verdict on one file.
 */
const CALL_ERROR = /Failed to query|Stage call failed|Stage pooling call failed|Could not connect|Connection refused|Connection timed out|Protocol not supported|Malformed served response|Response with no data|requestID attribute missing|Request ID (missing|mismatch)|Files attribute missing/i;

/**
 * The one error of a failed call, when every file failed with the same message and that message
 * is gfal2's wording for a failed call or is shared by several files (a storage's verdict on a
 * file names that file or differs between files). Taking such a failure for the files' own would
 * give up on a whole observation because the storage had a bad minute.
 */
export function callFailure(states: ReadonlyMap<string, FileState>): string | undefined {
  const messages = new Set<string>();
  for (const s of states.values()) {
    if (s.state !== 'failed') return undefined;
    messages.add(s.message);
  }
  if (messages.size !== 1) return undefined;
  const [message] = [...messages] as [string];
  const namesAFile = [...states.keys()].some((surl) => message.includes(surl) || message.includes(urlPath(surl)));
  return CALL_ERROR.test(message) || (states.size > 1 && !namesAFile) ? message : undefined;
}

function urlPath(surl: string): string {
  try {
    return new URL(surl).pathname;
  } catch {
    return surl;
  }
}
