/** adler32 by an independent implementation (Python's zlib), to check ours against. */
import { execFileSync } from 'node:child_process';

const python = (source: string, args: string[], input?: Buffer) =>
  execFileSync('python3', ['-c', `import sys, zlib; print("%08x" % zlib.adler32(${source}))`, ...args], { input }).toString().trim();

export function zlibAdler32(data: Buffer): string {
  return python('sys.stdin.buffer.read()', [], data);
}

/** Read by Python itself: large files never pass through the test's memory. */
export function zlibAdler32File(file: string): string {
  return python('open(sys.argv[1], "rb").read()', [file]);
}
