/**
 * adler32 as the grid records it (8 lower-case hex digits), fast enough to run while streaming.
 * WebAssembly SIMD does the work where the runtime has it (adler32-simd.ts, several GB/s); this
 * file's JavaScript version is the fallback and the second opinion in tests.
 *
 * The byte loop a += x; b += a is one long dependency chain; instead we read 32-bit little-endian
 * words and sum byte lanes two at a time inside a 32-bit integer (SWAR). Per block of BLOCK_WORDS
 * words, b grows by n·a₀ + Σ(n−j)·xⱼ: the weighted part is 4·Σ(running lane sums) minus the
 * in-word offsets 1·x₁ + 2·x₂ + 3·x₃. Lanes are 16 bits wide, so a block stays short enough that
 * no lane overflows; the modulo is deferred over many blocks (zlib's NMAX idea) while a and b stay
 * below 2³¹ so V8 keeps them small integers.
 */
import fs from 'node:fs';
import os from 'node:os';
import { simdAdler32 } from './adler32-simd.js';

const BASE = 65521;
/** Running lane sums reach 510·n(n+1)/2: 12 words keep them below 2¹⁶ (and a multiple of 4). */
const BLOCK_WORDS = 12;
/** Blocks between reductions: a < 2¹⁶ + 1920·255 and b < 2³¹ at the end of a run. */
const BLOCKS_PER_REDUCTION = 40;
const LITTLE_ENDIAN = os.endianness() === 'LE';

export const ADLER32_INITIAL = 1;

const shared = simdAdler32();

/** Adds `buf` to a running adler32 (start with ADLER32_INITIAL). */
export function adler32Update(adler: number, buf: Uint8Array): number {
  return shared ? shared.update(adler, buf) : adler32UpdatePortable(adler, buf);
}

/** The same in plain JavaScript (SWAR on little-endian hosts, bytewise elsewhere). */
export function adler32UpdatePortable(adler: number, buf: Uint8Array): number {
  if (!LITTLE_ENDIAN) return adler32Bytewise(adler, buf);
  let a = adler & 0xffff;
  let b = adler >>> 16;
  const len = buf.length;
  let i = 0;
  // Bytes before the first 4-byte boundary go one by one (at most 3).
  const head = Math.min(len, (4 - (buf.byteOffset & 3)) & 3);
  for (; i < head; i++) {
    a += buf[i]!;
    b += a;
  }
  const words = (len - i) >>> 2;
  if (words > 0) {
    const u32 = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
    let w = 0;
    while (w < words) {
      const runEnd = Math.min(w + BLOCK_WORDS * BLOCKS_PER_REDUCTION, words);
      while (w < runEnd) {
        const end = Math.min(w + BLOCK_WORDS, runEnd);
        const n = end - w;
        let cum = 0;
        let tot = 0;
        let l02 = 0;
        let l13 = 0;
        // Four words per turn: tot gains the four running sums at once (4·cum + 4s₀ + 3s₁ + 2s₂ + s₃).
        for (; w + 4 <= end; w += 4) {
          const x0 = u32[w]!;
          const x1 = u32[w + 1]!;
          const x2 = u32[w + 2]!;
          const x3 = u32[w + 3]!;
          const lo0 = x0 & 0x00ff00ff;
          const hi0 = (x0 >>> 8) & 0x00ff00ff;
          const lo1 = x1 & 0x00ff00ff;
          const hi1 = (x1 >>> 8) & 0x00ff00ff;
          const lo2 = x2 & 0x00ff00ff;
          const hi2 = (x2 >>> 8) & 0x00ff00ff;
          const lo3 = x3 & 0x00ff00ff;
          const hi3 = (x3 >>> 8) & 0x00ff00ff;
          const s0 = lo0 + hi0;
          const s1 = lo1 + hi1;
          const s2 = lo2 + hi2;
          const s3 = lo3 + hi3;
          l02 += lo0 + lo1 + lo2 + lo3;
          l13 += hi0 + hi1 + hi2 + hi3;
          tot += 4 * cum + 4 * s0 + 3 * s1 + 2 * s2 + s3;
          cum += s0 + s1 + s2 + s3;
        }
        for (; w < end; w++) {
          const x = u32[w]!;
          const lo = x & 0x00ff00ff;
          const hi = (x >>> 8) & 0x00ff00ff;
          l02 += lo;
          l13 += hi;
          cum += lo + hi;
          tot += cum;
        }
        const s0 = l02 & 0xffff;
        const s2 = l02 >>> 16;
        const s1 = l13 & 0xffff;
        const s3 = l13 >>> 16;
        b += 4 * n * a + 4 * ((tot & 0xffff) + (tot >>> 16)) - (s1 + 2 * s2 + 3 * s3);
        a += s0 + s1 + s2 + s3;
      }
      a %= BASE;
      b %= BASE;
    }
    i += words * 4;
  }
  for (; i < len; i++) {
    a += buf[i]!;
    b += a;
  }
  a %= BASE;
  b %= BASE;
  return ((b << 16) | a) >>> 0;
}

/** The plain definition, for big-endian hosts; reduces every 3800 bytes so that b stays below 2³¹. */
function adler32Bytewise(adler: number, buf: Uint8Array): number {
  let a = adler & 0xffff;
  let b = adler >>> 16;
  for (let i = 0; i < buf.length; i++) {
    a += buf[i]!;
    b += a;
    if (i % 3800 === 3799) {
      a %= BASE;
      b %= BASE;
    }
  }
  return (((b % BASE) << 16) | (a % BASE)) >>> 0;
}

export function adler32Hex(adler: number): string {
  return adler.toString(16).padStart(8, '0');
}

/** A streaming adler32 with a byte count: feed chunks, read `hex` and `size` at the end. */
export class Adler32 {
  private value = ADLER32_INITIAL;
  size = 0;

  update(chunk: Uint8Array): void {
    this.value = adler32Update(this.value, chunk);
    this.size += chunk.length;
  }

  get hex(): string {
    return adler32Hex(this.value);
  }
}

/**
 * `bytes` of memory to receive data in, with the adler32 update that sums data there in place: in
 * the SIMD module's own memory (no copy), or plain memory and the JavaScript version without SIMD.
 */
export function checksumMemory(bytes: number): { buffer: Buffer; update: (adler: number, buf: Uint8Array) => number } {
  const simd = simdAdler32(bytes);
  return simd ? { buffer: simd.buffer, update: simd.update } : { buffer: Buffer.allocUnsafeSlow(bytes), update: adler32UpdatePortable };
}

/**
 * A file read front to back in chunks into a few reused buffers, adler32 taken on each chunk as
 * it is read, while it is still in the CPU cache (with SIMD in place, without a copy). A chunk
 * returned by next() stays valid until `depth - 1` more calls: a caller that hands it on (to a
 * socket) must be done with it by then.
 */
export class ChecksummedFileReader {
  private readonly buffers: Buffer[];
  private readonly add: (adler: number, buf: Uint8Array) => number;
  private adler = ADLER32_INITIAL;
  private turn = 0;
  size = 0;

  private constructor(
    private readonly handle: fs.promises.FileHandle,
    chunkBytes: number,
    depth: number,
  ) {
    const memory = checksumMemory(chunkBytes * depth);
    this.buffers = Array.from({ length: depth }, (_, i) => memory.buffer.subarray(i * chunkBytes, (i + 1) * chunkBytes));
    this.add = memory.update;
  }

  static async open(file: string, chunkBytes: number, depth: number): Promise<ChecksummedFileReader> {
    return new ChecksummedFileReader(await fs.promises.open(file, 'r'), chunkBytes, depth);
  }

  /** The next chunk, or null at the end of the file. */
  async next(): Promise<Buffer | null> {
    const buf = this.buffers[this.turn++ % this.buffers.length]!;
    const { bytesRead } = await this.handle.read(buf, 0, buf.length, null);
    if (bytesRead === 0) return null;
    const chunk = buf.subarray(0, bytesRead);
    this.adler = this.add(this.adler, chunk);
    this.size += bytesRead;
    return chunk;
  }

  get hex(): string {
    return adler32Hex(this.adler);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** adler32 and size of a file. */
export async function adler32File(file: string): Promise<{ adler32: string; size: number }> {
  const reader = await ChecksummedFileReader.open(file, 1 << 20, 1);
  try {
    while (await reader.next());
    return { adler32: reader.hex, size: reader.size };
  } finally {
    await reader.close();
  }
}
