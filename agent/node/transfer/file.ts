/** file:// URLs: a local or shared (NFS, Lustre) file system. */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adler32File, ChecksummedFileReader } from '../adler32.js';
import { TransferError, type Transfer, type Transferred } from './types.js';

const CHUNK = 1 << 20;

export const fileTransfer: Transfer = {
  async download(url, dest, opts) {
    const src = localPath(url);
    if (!fs.existsSync(src)) throw new TransferError(url, 'no such file', false);
    return copyWithSum(src, dest, opts.signal);
  },
  async upload(src, url, opts) {
    const dest = localPath(url);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    // Write beside and rename, so that a reader never sees half a file.
    const part = `${dest}.part-${process.pid}`;
    try {
      const sum = await copyWithSum(src, part, opts.signal);
      fs.renameSync(part, dest);
      return sum;
    } finally {
      fs.rmSync(part, { force: true });
    }
  },
  async stat(url) {
    try {
      return { size: fs.statSync(localPath(url)).size };
    } catch {
      return null;
    }
  },
  async rename(from, to, { replace }) {
    const src = localPath(from);
    const dest = localPath(to);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    if (replace) {
      fs.renameSync(src, dest);
      return true;
    }
    // link(2) fails when the name exists: publishing without replacing is one atomic step.
    try {
      fs.linkSync(src, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      // File systems without hard links: look, then rename (a narrow window instead of none).
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK') throw err;
      if (fs.existsSync(dest)) return false;
      fs.renameSync(src, dest);
      return true;
    }
    fs.rmSync(src, { force: true });
    return true;
  },
  async remove(url) {
    fs.rmSync(localPath(url), { force: true });
  },
  async checksum(url) {
    const file = localPath(url);
    return fs.existsSync(file) ? (await adler32File(file)).adler32 : null;
  },
};

function localPath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw new TransferError(url, `not a local file URL: ${(err as Error).message}`, false);
  }
}

/**
 * Copies through two reused buffers that take turns (one being read and summed while the other is
 * written), so that a big file allocates nothing per chunk: fresh chunk buffers would stay in
 * memory until the next garbage collection, tens of MB with the agent's small heap.
 */
async function copyWithSum(src: string, dest: string, signal: AbortSignal): Promise<Transferred> {
  const reader = await ChecksummedFileReader.open(src, CHUNK, 2);
  try {
    const out = await fs.promises.open(dest, 'w');
    let writing: Promise<void> = Promise.resolve();
    try {
      for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
        await writing;
        signal.throwIfAborted();
        writing = writeAll(out, chunk);
      }
      await writing;
    } finally {
      await writing.catch(() => undefined); // a failed read must not leave a write running (or unhandled)
      await out.close();
    }
  } finally {
    await reader.close();
  }
  return { size: reader.size, adler32: reader.hex };
}

async function writeAll(out: fs.promises.FileHandle, chunk: Buffer): Promise<void> {
  for (let done = 0; done < chunk.length; ) done += (await out.write(chunk, done, chunk.length - done)).bytesWritten;
}
