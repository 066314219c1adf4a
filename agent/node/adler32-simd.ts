/**
 * adler32 in WebAssembly SIMD: 16 bytes per step instead of 4. The module is small enough to be
 * written out here instruction by instruction (no toolchain, no binary blob in the repository).
 *
 * Per block of N 16-byte vectors starting with sums (a, b):
 *   a' = a + Σ bytes
 *   b' = b + 16N·a + 16·Σₖ (N−1−k)·Sₖ + Σₖ Σⱼ (16−j)·xₖⱼ
 * where Sₖ is the byte sum of vector k. Lane-wise: `s1` collects the byte sums, `prefix` adds s1
 * before each vector (giving Σ (N−1−k)·Sₖ), `weighted` collects bytes times 16..1. Blocks are
 * 4 KiB, so no 32-bit lane can overflow; a and b are 64-bit and reduced once per block.
 */

/** The little of the WebAssembly API used here (the project's type libraries do not declare it). */
declare const WebAssembly: {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
  Memory: new (limits: { initial: number; maximum: number }) => { buffer: ArrayBuffer };
};

const BASE = 65521;
const BLOCK = 4096;
/** Other bytes are copied into the module's memory in slices of this size (they stay in cache). */
const SCRATCH = 256 << 10;
const PAGE = 64 << 10;

// Locals: parameters first, then the declared ones.
const ADLER = 0, PTR = 1, END = 2, A = 3, B = 4, VEC_END = 5, BLOCK_END = 6, BLOCK_START = 7;
const S1 = 8, WEIGHTED = 9, PREFIX = 10, X = 11;
const I32 = 0x7f, I64 = 0x7e, V128 = 0x7b;

const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const tee = (i: number) => [0x22, i];
const i32 = (n: number) => [0x41, ...sleb(n)];
const i64 = (n: number) => [0x42, ...sleb(n)];
const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
const op = {
  block: [0x02, 0x40], loop: [0x03, 0x40], end: [0x0b], br: (d: number) => [0x0c, d], brIf: (d: number) => [0x0d, d], select: [0x1b],
  i32Add: [0x6a], i32Sub: [0x6b], i32And: [0x71], i32ShrU: [0x76], i32LtU: [0x49], i32GeU: [0x4f],
  i64Add: [0x7c], i64Mul: [0x7e], i64RemU: [0x82], i64Shl: [0x86], i64Or: [0x84], i64ExtendI32U: [0xad], i32WrapI64: [0xa7],
  i64Load8U: [0x31, 0, 0],
  i32x4Add: simd(174), i16x8Add: simd(142), i32x4Lane: (l: number) => simd(27, l),
  i16x8SumPairsU8: simd(125), i32x4SumPairsU16: simd(127), i16x8MulLowU8: simd(158), i16x8MulHighU8: simd(159),
};
const v128 = (bytes: number[]) => simd(12, ...bytes);
const ZERO = v128(new Array(16).fill(0));
/** Weights 16..1: the low half multiplies bytes 0–7, the high half bytes 8–15. */
const WEIGHTS = v128(Array.from({ length: 16 }, (_, j) => 16 - j));
/** The four 32-bit lanes of a vector added (no overflow at these block sizes), as i64. */
const laneSum = (v: number) => [...get(v), ...op.i32x4Lane(0), ...get(v), ...op.i32x4Lane(1), ...op.i32Add, ...get(v), ...op.i32x4Lane(2), ...op.i32Add, ...get(v), ...op.i32x4Lane(3), ...op.i32Add, ...op.i64ExtendI32U];

/**
 * Vectors summed per loop turn. The agent runs WebAssembly on V8's baseline compiler (Liftoff,
 * agent/v8-settings.ts), which keeps locals in registers within straight code but stores and
 * reloads them around every loop turn: four vectors a turn pay that once per 64 bytes.
 */
const UNROLL = 4;

/** The vector at ptr + offset added to s1, prefix and weighted. */
const vector = (offset: number) => [
  ...get(PTR), ...simd(0x00, 4, offset), ...set(X),
  ...get(PREFIX), ...get(S1), ...op.i32x4Add, ...set(PREFIX),
  ...get(S1), ...get(X), ...op.i16x8SumPairsU8, ...op.i32x4SumPairsU16, ...op.i32x4Add, ...set(S1),
  ...get(WEIGHTED), ...get(X), ...WEIGHTS, ...op.i16x8MulLowU8, ...get(X), ...WEIGHTS, ...op.i16x8MulHighU8, ...op.i16x8Add, ...op.i32x4SumPairsU16, ...op.i32x4Add, ...set(WEIGHTED),
];

/** (adler, ptr, len) -> adler: the function body. */
function body(): number[] {
  return [
    // a = adler & 0xffff; b = adler >>> 16; vecEnd = ptr + (len & ~15); end = ptr + len
    ...get(ADLER), ...i32(0xffff), ...op.i32And, ...op.i64ExtendI32U, ...set(A),
    ...get(ADLER), ...i32(16), ...op.i32ShrU, ...op.i64ExtendI32U, ...set(B),
    ...get(PTR), ...get(END), ...i32(-16), ...op.i32And, ...op.i32Add, ...set(VEC_END),
    ...get(PTR), ...get(END), ...op.i32Add, ...set(END),
    ...op.block, ...op.loop,
    ...get(PTR), ...get(VEC_END), ...op.i32GeU, ...op.brIf(1),
    ...get(PTR), ...set(BLOCK_START),
    // blockEnd = min(ptr + BLOCK, vecEnd)
    ...get(PTR), ...i32(BLOCK), ...op.i32Add, ...get(VEC_END), ...get(PTR), ...i32(BLOCK), ...op.i32Add, ...get(VEC_END), ...op.i32LtU, ...op.select, ...set(BLOCK_END),
    ...ZERO, ...set(S1), ...ZERO, ...set(WEIGHTED), ...ZERO, ...set(PREFIX),
    // UNROLL vectors a turn while they fit, then one a turn (only a file's last block is short).
    ...op.block, ...op.loop,
    ...get(BLOCK_END), ...get(PTR), ...op.i32Sub, ...i32(16 * UNROLL), ...op.i32LtU, ...op.brIf(1),
    ...Array.from({ length: UNROLL }, (_, k) => vector(16 * k)).flat(),
    ...get(PTR), ...i32(16 * UNROLL), ...op.i32Add, ...set(PTR),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.block, ...op.loop,
    ...get(PTR), ...get(BLOCK_END), ...op.i32GeU, ...op.brIf(1),
    ...vector(0),
    ...get(PTR), ...i32(16), ...op.i32Add, ...set(PTR),
    ...op.br(0),
    ...op.end, ...op.end,
    // b = (b + (blockEnd − blockStart)·a + 16·Σprefix + Σweighted) mod BASE; a = (a + Σs1) mod BASE
    ...get(B), ...get(BLOCK_END), ...get(BLOCK_START), ...op.i32Sub, ...op.i64ExtendI32U, ...get(A), ...op.i64Mul, ...op.i64Add,
    ...laneSum(PREFIX), ...i64(4), ...op.i64Shl, ...op.i64Add, ...laneSum(WEIGHTED), ...op.i64Add, ...i64(BASE), ...op.i64RemU, ...set(B),
    ...get(A), ...laneSum(S1), ...op.i64Add, ...i64(BASE), ...op.i64RemU, ...set(A),
    ...op.br(0),
    ...op.end, ...op.end,
    // The last 0–15 bytes one by one.
    ...op.block, ...op.loop,
    ...get(PTR), ...get(END), ...op.i32GeU, ...op.brIf(1),
    ...get(A), ...get(PTR), ...op.i64Load8U, ...op.i64Add, ...tee(A), ...get(B), ...op.i64Add, ...set(B),
    ...get(PTR), ...i32(1), ...op.i32Add, ...set(PTR),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(B), ...i64(BASE), ...op.i64RemU, ...i64(16), ...op.i64Shl, ...get(A), ...i64(BASE), ...op.i64RemU, ...op.i64Or, ...op.i32WrapI64,
    ...op.end,
  ];
}

function moduleBytes(): Uint8Array {
  const code = [...vec([[2, I64], [3, I32], [4, V128]].map(([n, t]) => [n!, t!])), ...body()];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32]]), ...vec([[I32]])]])), // (i32, i32, i32) -> i32
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 1]])), // a memory of at least one page
    ...section(3, vec([[0]])),
    ...section(7, vec([[...name('adler32'), 0x00, 0]])),
    ...section(10, vec([[...uleb(code.length), ...code]])),
  ]);
}

function uleb(n: number): number[] {
  return n < 0x80 ? [n] : [(n & 0x7f) | 0x80, ...uleb(n >>> 7)];
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
const name = (s: string) => [...uleb(s.length), ...Buffer.from(s)];

export interface SimdAdler32 {
  /** Adds `buf` to a running adler32: in place when it lies in `buffer`, else copied in slices. */
  update(adler: number, buf: Uint8Array): number;
  /** Bytes in the module's memory, to read data into and sum without a copy. */
  buffer: Buffer;
}

let compiled: object | null | undefined;

/**
 * A SIMD adler32 with `bufferBytes` of its own memory for the caller, or null where WebAssembly
 * SIMD is missing (x86 CPUs without SSE4.1, some runtimes).
 */
export function simdAdler32(bufferBytes = 0): SimdAdler32 | null {
  if (compiled === undefined) {
    const bytes = moduleBytes();
    compiled = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  if (!compiled) return null;
  const pages = Math.ceil((SCRATCH + bufferBytes) / PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const run = new WebAssembly.Instance(compiled, { env: { memory } }).exports.adler32 as (adler: number, ptr: number, len: number) => number;
  const scratch = new Uint8Array(memory.buffer, 0, SCRATCH);
  return {
    buffer: Buffer.from(memory.buffer, SCRATCH, bufferBytes),
    update(adler, buf) {
      if (buf.buffer === memory.buffer) return run(adler, buf.byteOffset, buf.length) >>> 0;
      for (let i = 0; i < buf.length; i += SCRATCH) {
        const slice = buf.subarray(i, i + SCRATCH);
        scratch.set(slice);
        adler = run(adler, 0, slice.length) >>> 0;
      }
      return adler;
    },
  };
}
