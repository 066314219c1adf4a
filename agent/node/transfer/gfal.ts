/**
 * srm://, gsiftp://, root:// (and anything else gfal2 speaks) through the gfal2 command line tools.
 * adler32 is computed here on the local file: many storage elements (and nginx) give no checksum.
 */
import { execa, type ExecaError } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { adler32File } from '../adler32.js';
import { findExecutable } from '../which.js';
import { TransferError, type Transfer } from './types.js';

const PACKAGE_HINT = 'install the gfal2 command line tools (Debian/Ubuntu: gfal2-util-scripts plus gfal2-plugin-srm/-gridftp/-xrootd/-http; EL: gfal2-util)';

export interface GfalOptions {
  /** Per-file timeout in seconds, passed to gfal-copy as well so that it gives up first. */
  timeoutS: number;
  /** Environment for gfal (X509_USER_PROXY …) */
  env: NodeJS.ProcessEnv;
  /** The credential for a URL as environment (BEARER_TOKEN), read before each command */
  auth?: (url: string) => NodeJS.ProcessEnv;
}

export function gfalAvailable(): boolean {
  return findExecutable('gfal-copy') !== null;
}

export function gfalTransfer(opts: GfalOptions): Transfer {
  const run = async (tool: string, args: string[], url: string, signal: AbortSignal) => {
    if (!findExecutable(tool)) throw new TransferError(url, `${tool} is not installed: ${PACKAGE_HINT}`, false);
    try {
      return await execa(tool, args, { env: gfalEnv({ ...opts.env, ...opts.auth?.(url) }), cancelSignal: signal, stdin: 'ignore', all: true });
    } catch (err) {
      throw gfalError(url, tool, err as ExecaError, signal);
    }
  };
  return {
    async download(url, dest, { signal }) {
      fs.rmSync(dest, { force: true });
      await run('gfal-copy', ['-t', String(opts.timeoutS), url, pathToFileURL(dest).href], url, signal);
      return adler32File(dest);
    },
    async upload(src, url, { signal }) {
      const sum = await adler32File(src);
      const args = ['-t', String(opts.timeoutS), pathToFileURL(path.resolve(src)).href, url];
      try {
        await run('gfal-copy', args, url, signal);
      } catch (err) {
        // Missing parent directory: ask gfal to make it. Not by default, because some WebDAV
        // servers (nginx) create parents on PUT themselves but answer gfal's MKCOL probing with 409.
        if (!(err instanceof TransferError) || !/No such file|ENOENT/i.test(err.causeText)) throw err;
        await run('gfal-copy', ['-p', ...args], url, signal);
      }
      return sum;
    },
    async stat(url, { signal }) {
      try {
        const { stdout } = await run('gfal-stat', [url], url, signal);
        const m = /Size:\s*(\d+)/.exec(stdout);
        if (!m) throw new TransferError(url, 'gfal-stat gave no size', false);
        return { size: Number(m[1]) };
      } catch (err) {
        if (err instanceof TransferError && /no such file|not found|ENOENT|404/i.test(err.causeText)) return null;
        throw err;
      }
    },
    async rename(from, to, { signal, replace }) {
      // gfal-rename has no "unless it exists": look first (a narrow window, where MOVE and link(2) have none).
      if (!replace && (await this.stat(to, { signal }))) return false;
      await run('gfal-rename', [from, to], from, signal);
      return true;
    },
    async remove(url, { signal }) {
      try {
        await run('gfal-rm', [url], url, signal);
      } catch (err) {
        if (!(err instanceof TransferError && /no such file|not found|ENOENT|404/i.test(err.causeText))) throw err;
      }
    },
    async checksum(url, { signal }) {
      try {
        const { stdout } = await run('gfal-sum', [url, 'ADLER32'], url, signal);
        const m = /\s([0-9a-f]{1,8})\s*$/i.exec(stdout.trim().split('\n').pop() ?? '');
        return m ? m[1]!.toLowerCase().padStart(8, '0') : null;
      } catch (err) {
        // Many storage elements (nginx among them) cannot checksum: that is "unknown", not a failure.
        if (err instanceof TransferError) return null;
        throw err;
      }
    },
  };
}

/** gfal's launcher guesses a Python; where the default `python` lacks gfal2 it needs GFAL_PYTHONBIN. */
function gfalEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.GFAL_PYTHONBIN || !fs.existsSync('/usr/bin/python3')) return env;
  return { ...env, GFAL_PYTHONBIN: '/usr/bin/python3' };
}

function gfalError(url: string, tool: string, err: ExecaError, signal: AbortSignal): TransferError {
  if (signal.aborted) {
    const reason = signal.reason as Error | undefined;
    return new TransferError(url, reason?.name === 'TimeoutError' ? 'timed out' : 'aborted', reason?.name === 'TimeoutError');
  }
  const output = String(err.all ?? err.stderr ?? '').trim();
  // gfal prints "gfal-copy error: 2 (No such file or directory) - …"; keep its last line.
  const last = output.split('\n').filter(Boolean).pop() ?? `${tool} exited with ${err.exitCode}`;
  const notFound = /No such file|404|ENOENT/i.test(last);
  const denied = /Permission denied|403|401|EACCES/i.test(last);
  return new TransferError(url, last.replace(/^gfal-[a-z]+ error:\s*/, ''), !notFound && !denied);
}
