/** file:// URLs: a local or shared (NFS, Lustre) file system. */
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Adler32 } from '../adler32.js';
import { TransferError, type Transfer, type Transferred } from './types.js';

const CHUNK = 4 << 20;

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
};

function localPath(url: string): string {
  try {
    return fileURLToPath(url);
  } catch (err) {
    throw new TransferError(url, `not a local file URL: ${(err as Error).message}`, false);
  }
}

async function copyWithSum(src: string, dest: string, signal: AbortSignal): Promise<Transferred> {
  const sum = new Adler32();
  await pipeline(
    fs.createReadStream(src, { highWaterMark: CHUNK }),
    async function* (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        sum.update(chunk);
        yield chunk;
      }
    },
    fs.createWriteStream(dest),
    { signal },
  );
  return { size: sum.size, adler32: sum.hex };
}
