/**
 * Finding a software image on CVMFS: the repository must be mounted and the image present. CVMFS
 * sits behind autofs, whose first access can hang for a long time; every look is a stat with a
 * timeout, and a hang is reported as such rather than waited out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EXIT } from '../../server/token.js';
import { PhaseError } from '../phases.js';

export interface ImageLookup {
  /** Where /cvmfs is on this node (tests and relocated installs); default /cvmfs itself */
  cvmfsRoot?: string;
  timeoutS: number;
}

export interface Image {
  /** As the token or --image named it */
  requested: string;
  /** Where it is on this node (after --cvmfs-root mapping) */
  path: string;
  /** A .sif (or other single-file) image, or an unpacked directory tree */
  kind: 'file' | 'dir';
  size: number;
  mtimeMs: number;
}

/** `/cvmfs/<repo>/rest` → `<cvmfsRoot>/<repo>/rest`; other paths stay. */
export function mapCvmfsPath(requested: string, cvmfsRoot: string | undefined): string {
  if (!cvmfsRoot || !(requested === '/cvmfs' || requested.startsWith('/cvmfs/'))) return requested;
  return path.join(cvmfsRoot, requested.slice('/cvmfs'.length));
}

export async function locateImage(requested: string, lookup: ImageLookup): Promise<Image> {
  const notFound = (detail: string, retryable: boolean) => new PhaseError(`image not found: ${requested}`, EXIT.imageNotFound, retryable, detail);
  if (!path.isAbsolute(requested)) throw notFound('the image must be given as an absolute path (e.g. /cvmfs/…/lofar.sif)', false);
  const where = mapCvmfsPath(requested, lookup.cvmfsRoot);
  const repo = cvmfsRepository(requested);
  if (repo) {
    // Touching the repository root makes autofs mount it; a missing root means the repository is not configured here.
    const repoPath = mapCvmfsPath(`/cvmfs/${repo}`, lookup.cvmfsRoot);
    const r = await statWithTimeout(repoPath, lookup.timeoutS);
    if (r === 'timeout') throw notFound(`CVMFS repository ${repo} did not answer within ${lookup.timeoutS} s (autofs or the CVMFS client hanging?)`, true);
    if (r === 'missing') throw notFound(`CVMFS repository ${repo} is not mounted on this node (${repoPath})`, true);
  }
  const st = await statWithTimeout(where, lookup.timeoutS);
  if (st === 'timeout') throw notFound(`no answer within ${lookup.timeoutS} s looking at ${where}`, true);
  if (st === 'missing') throw notFound(where === requested ? 'no such file or directory' : `no such file or directory: ${where}`, false);
  if (!st.isFile() && !st.isDirectory()) throw notFound(`${where} is neither a file nor a directory`, false);
  return { requested, path: where, kind: st.isDirectory() ? 'dir' : 'file', size: st.size, mtimeMs: st.mtimeMs };
}

function cvmfsRepository(p: string): string | null {
  const m = /^\/cvmfs\/([^/]+)/.exec(p);
  return m ? m[1]! : null;
}

/** fs.stat that gives up after `timeoutS` (the hung call stays in libuv's pool; we do not wait for it). */
export async function statWithTimeout(p: string, timeoutS: number): Promise<fs.Stats | 'missing' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutS * 1000);
  });
  const look = fs.promises.stat(p).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return 'missing' as const;
    throw err;
  });
  try {
    return await Promise.race([look, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
