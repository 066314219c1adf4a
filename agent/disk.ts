/**
 * A scratch directory that is full, over quota or read-only is the node's fault, not the token's:
 * every token would fail on it the same way. These checks find it before a claim (a probe write and
 * the free space), while a step runs (the free space, sampled), and after a failure (the error's
 * code, the step's stderr, the disk as it is then), so that the attempt is given back as a node
 * problem naming the path and its free space instead of burning the token's attempts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EXIT } from '../server/token.js';
import { NodeFault } from './phases.js';

const WHAT = { ENOSPC: 'no space left on device', EDQUOT: 'disk quota exceeded', EROFS: 'read-only file system' } as const;
export type DiskCode = keyof typeof WHAT;

/** What the C library prints for each code (the step's tools report it in these words). */
const TEXT: [RegExp, DiskCode][] = [
  [/\bENOSPC\b|no space left on device/i, 'ENOSPC'],
  [/\bEDQUOT\b|disk quota exceeded/i, 'EDQUOT'],
  [/\bEROFS\b|read-only file system/i, 'EROFS'],
];

/** Less free space than this counts as a full file system (tmpfs and ext4 hand out whole blocks). */
export const FULL_BYTES = 1 << 20;

/** Bytes an unprivileged writer may still use on the file system holding `dir`; null when it cannot be read. */
export function freeBytes(dir: string): number | null {
  // The directory may not exist (its mkdir was what failed): its nearest parent is on the same file system or above it.
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      const s = fs.statfsSync(d);
      return s.bavail * s.bsize;
    } catch {
      if (d === path.dirname(d)) return null;
    }
  }
}

/** The disk code of an error, its causes, or its message (errors wrapped by transfers or tar keep only the text). */
export function diskCodeOf(err: unknown): DiskCode | null {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code in WHAT) return code as DiskCode;
    const code2 = diskCodeIn(e instanceof Error ? e.message : String(e));
    if (code2) return code2;
  }
  return null;
}

export function diskCodeIn(text: string): DiskCode | null {
  for (const [re, code] of TEXT) if (re.test(text)) return code;
  return null;
}

/** Writes and removes a small file in `dir`: what a full, over-quota or read-only file system refuses. */
export function probeWrite(dir: string): DiskCode | null {
  const file = path.join(dir, `.tokenpool-probe-${process.pid}`);
  try {
    const fd = fs.openSync(file, 'w');
    try {
      // No fsync: full, over-quota and read-only file systems refuse the write itself (block reservation).
      fs.writeSync(fd, Buffer.alloc(4096));
    } finally {
      fs.closeSync(fd);
    }
    return null;
  } catch (err) {
    return diskCodeOf(err);
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** The node problem for `code` on `dir`, with the free space there now. */
export function diskFault(dir: string, code: DiskCode, detail?: string): NodeFault {
  return new NodeFault(`${WHAT[code]}: ${dir} (${formatBytes(freeBytes(dir))} free)`, EXIT.scratchUnusable, detail);
}

/**
 * Before a claim: the work directory takes a write and has `minFree` bytes free; throws the node
 * problem otherwise.
 */
export function checkScratch(dir: string, minFree: number): void {
  const code = probeWrite(dir);
  if (code) throw diskFault(dir, code, 'a test write failed');
  const free = freeBytes(dir);
  if (free !== null && free < Math.max(minFree, FULL_BYTES)) {
    throw new NodeFault(`not enough free space: ${dir} (${formatBytes(free)} free, --min-free ${formatBytes(minFree)})`, EXIT.scratchUnusable);
  }
}

/**
 * After a failed attempt: why the scratch directory made it fail, if it did. Looks at the error,
 * whether the disk was seen full while the step ran, the step's stderr, and the disk now.
 */
export function scratchTrouble(dir: string, evidence: { err?: unknown; sawFull: boolean; stderr?: string }): NodeFault | null {
  const fromErr = evidence.err === undefined ? null : diskCodeOf(evidence.err);
  if (fromErr) return diskFault(dir, fromErr, evidence.err instanceof Error ? evidence.err.message : undefined);
  const fromText = evidence.stderr ? diskCodeIn(evidence.stderr) : null;
  if (fromText) return diskFault(dir, fromText, 'the step reported it');
  const now = probeWrite(dir);
  if (now) return diskFault(dir, now, 'a test write after the failure failed');
  const free = freeBytes(dir);
  if (evidence.sawFull || (free !== null && free < FULL_BYTES)) return diskFault(dir, 'ENOSPC', 'the file system was full while the step ran');
  return null;
}

/** Samples the free space of `dir` while a step runs: a step that fills the disk may clean up before it fails. */
export class FullWatch {
  sawFull = false;
  private readonly timer: NodeJS.Timeout;

  constructor(dir: string, everyMs = 1000) {
    this.timer = setInterval(() => {
      const free = freeBytes(dir);
      if (free !== null && free < FULL_BYTES) this.sawFull = true;
    }, everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

export function formatBytes(n: number | null): string {
  if (n === null) return 'unknown';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
