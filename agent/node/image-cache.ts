/**
 * A node-local copy of images, shared by every agent on the node: the first agent to need an image
 * copies it (under a lock, so it happens once), verifies the copy, and later agents use it. Least
 * recently used images are evicted beyond the size limit.
 *
 * Layout: <dir>/<key>/image (the file or tree) and <dir>/<key>/meta.json, whose mtime records the
 * last use; <dir>/<key>.lock is the proper-lockfile lock. The key names the source path and its
 * size and mtime, so a changed image on CVMFS gets a new entry.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import type { Logger } from '../../server/log.js';
import { EXIT } from '../../server/token.js';
import { PhaseError } from '../phases.js';
import { adler32File } from './adler32.js';
import type { Image } from './image.js';

export interface CacheMeta {
  source: string;
  kind: 'file' | 'dir';
  /** Bytes on disk (the sum of all files for a tree) */
  bytes: number;
  files: number;
  /** adler32 of a file image, taken from the source and checked on the copy */
  adler32?: string;
  created: string;
}

export interface CachedImage {
  path: string;
  meta: CacheMeta;
  /** 'copied' when this call made the copy, 'hit' when it was there already */
  how: 'copied' | 'hit';
}

const LOCK_OPTIONS = {
  realpath: false,
  // A copy of several GB can take minutes: the holder refreshes the lock, waiters keep waiting.
  stale: 60_000,
  update: 10_000,
  retries: { retries: 2000, factor: 1.2, minTimeout: 100, maxTimeout: 2000 },
};

export async function cachedImage(image: Image, dir: string, maxBytes: number, log: Logger): Promise<CachedImage> {
  fs.mkdirSync(dir, { recursive: true });
  const key = cacheKey(image);
  const entry = path.join(dir, key);
  const release = await lock(entry);
  let result: CachedImage;
  try {
    const meta = readMeta(entry);
    if (meta) {
      touch(entry);
      result = { path: path.join(entry, 'image'), meta, how: 'hit' };
    } else {
      result = { path: path.join(entry, 'image'), meta: await copyIn(image, entry, log), how: 'copied' };
    }
  } finally {
    await release();
  }
  if (result.how === 'copied') await evict(dir, maxBytes, key, log);
  return result;
}

function cacheKey(image: Image): string {
  const h = createHash('sha256').update(`${image.path}\0${image.size}\0${Math.round(image.mtimeMs)}`).digest('hex').slice(0, 16);
  const name = path.basename(image.path).replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 60);
  return `${name}-${h}`;
}

function lock(entry: string): Promise<() => Promise<void>> {
  return lockfile.lock(entry, { ...LOCK_OPTIONS, lockfilePath: `${entry}.lock` });
}

function readMeta(entry: string): CacheMeta | null {
  try {
    return JSON.parse(fs.readFileSync(path.join(entry, 'meta.json'), 'utf8')) as CacheMeta;
  } catch {
    return null;
  }
}

function touch(entry: string): void {
  const now = new Date();
  fs.utimesSync(path.join(entry, 'meta.json'), now, now);
}

/** Copies into a temporary directory, verifies, then renames into place: a crash leaves no half entry. */
async function copyIn(image: Image, entry: string, log: Logger): Promise<CacheMeta> {
  const tmp = `${entry}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(entry, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const started = Date.now();
  try {
    const dest = path.join(tmp, 'image');
    let meta: CacheMeta;
    if (image.kind === 'file') {
      const source = await adler32File(image.path);
      await fs.promises.copyFile(image.path, dest);
      const copy = await adler32File(dest);
      if (copy.adler32 !== source.adler32 || copy.size !== source.size) {
        throw new PhaseError(`image not found: ${image.requested}`, EXIT.imageNotFound, true, `copy into the image cache does not verify (adler32 ${copy.adler32}, source ${source.adler32})`);
      }
      meta = { source: image.path, kind: 'file', bytes: copy.size, files: 1, adler32: copy.adler32, created: new Date().toISOString() };
    } else {
      await fs.promises.cp(image.path, dest, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
      const source = treeSize(image.path);
      const copy = treeSize(dest);
      if (source.bytes !== copy.bytes || source.files !== copy.files) {
        throw new PhaseError(`image not found: ${image.requested}`, EXIT.imageNotFound, true, `copy into the image cache does not verify (${copy.files} files/${copy.bytes} bytes, source ${source.files}/${source.bytes})`);
      }
      meta = { source: image.path, kind: 'dir', bytes: copy.bytes, files: copy.files, created: new Date().toISOString() };
    }
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(meta, null, 2));
    fs.renameSync(tmp, entry);
    log.info({ image: image.path, bytes: meta.bytes, seconds: (Date.now() - started) / 1000 }, 'image copied into the node cache');
    return meta;
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function treeSize(root: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += fs.statSync(path.join(entry.parentPath ?? entry.path, entry.name)).size;
  }
  return { bytes, files };
}

/** Removes least recently used entries until the cache fits, never the one just added nor one being copied. */
async function evict(dir: string, maxBytes: number, keep: string, log: Logger): Promise<void> {
  const entries = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.includes('.tmp-'))
    .flatMap((e) => {
      const entry = path.join(dir, e.name);
      const meta = readMeta(entry);
      if (!meta) return [];
      return [{ name: e.name, entry, bytes: meta.bytes, used: fs.statSync(path.join(entry, 'meta.json')).mtimeMs }];
    })
    .sort((a, b) => a.used - b.used);
  let total = entries.reduce((sum, e) => sum + e.bytes, 0);
  for (const e of entries) {
    if (total <= maxBytes) break;
    if (e.name === keep) continue;
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(e.entry, { realpath: false, lockfilePath: `${e.entry}.lock`, stale: LOCK_OPTIONS.stale });
    } catch {
      continue; // in use by another agent right now
    }
    try {
      fs.rmSync(e.entry, { recursive: true, force: true });
      total -= e.bytes;
      log.info({ image: readableName(e.name), bytes: e.bytes }, 'image evicted from the node cache');
    } finally {
      await release();
    }
  }
}

function readableName(key: string): string {
  return key.replace(/-[0-9a-f]{16}$/, '');
}
