/**
 * adler32 against an independent implementation (Python's zlib): odd offsets and lengths, worst-case bytes, chunking.
 * Both implementations: the WebAssembly SIMD one (adler32Update where the runtime has SIMD) and the JavaScript fallback.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'vitest';
import { simdAdler32 } from '../agent/node/adler32-simd.js';
import { Adler32, adler32File, adler32Hex, adler32Update, adler32UpdatePortable, ADLER32_INITIAL, ChecksummedFileReader } from '../agent/node/adler32.js';
import { zlibAdler32 } from './helpers/zlib-adler32.js';

test('matches zlib on random data at every alignment and many lengths', () => {
  const data = randomBytes(3 << 20);
  for (const [offset, length] of [[0, 0], [0, 1], [1, 3], [2, 47], [3, 48], [1, 5552], [3, 5553], [0, 65536 + 7], [1, 3 << 20 - 1], [2, (3 << 20) - 2]] as const) {
    const slice = data.subarray(offset, offset + length);
    const expected = zlibAdler32(Buffer.from(slice));
    assert.equal(adler32Hex(adler32Update(ADLER32_INITIAL, slice)), expected, `offset ${offset} length ${length}`);
    assert.equal(adler32Hex(adler32UpdatePortable(ADLER32_INITIAL, slice)), expected, `portable: offset ${offset} length ${length}`);
  }
});

test('WebAssembly SIMD is available here (Node 20 on x86-64/arm64) and sums data in its own memory in place', () => {
  const simd = simdAdler32(1 << 20);
  assert.ok(simd, 'WebAssembly SIMD missing: adler32 falls back to the slower JavaScript version');
  const data = randomBytes(1 << 20);
  data.copy(simd.buffer);
  for (const [offset, length] of [[0, 1 << 20], [5, 4096 * 3 + 17], [1, 15]] as const) {
    const expected = adler32UpdatePortable(ADLER32_INITIAL, data.subarray(offset, offset + length));
    assert.equal(simd.update(ADLER32_INITIAL, simd.buffer.subarray(offset, offset + length)), expected);
    assert.equal(simd.update(ADLER32_INITIAL, data.subarray(offset, offset + length)), expected);
  }
});

test('SIMD: every vector count a block can end with (four a turn, then one at a time), against the JavaScript version', () => {
  const simd = simdAdler32(1 << 16)!;
  const data = randomBytes(4096 + 300);
  data.copy(simd.buffer);
  for (let length = 0; length <= data.length; length += length < 300 ? 1 : 4096 - 300 + 1) {
    const expected = adler32UpdatePortable(ADLER32_INITIAL, data.subarray(3, 3 + length));
    assert.equal(simd.update(ADLER32_INITIAL, simd.buffer.subarray(3, 3 + length)), expected, `length ${length}`);
  }
});

test('worst case (all 0xff) does not overflow', () => {
  const ones = Buffer.alloc(5 << 20, 0xff);
  const expected = zlibAdler32(ones);
  assert.equal(adler32Hex(adler32Update(ADLER32_INITIAL, ones)), expected);
  assert.equal(adler32Hex(adler32UpdatePortable(ADLER32_INITIAL, ones)), expected);
});

test('streaming in uneven chunks gives the same sum; files too', async () => {
  const data = randomBytes(1 << 20);
  const sum = new Adler32();
  for (let i = 0; i < data.length; ) {
    const n = 1 + ((i * 7919) % 70001);
    sum.update(data.subarray(i, i + n));
    i += n;
  }
  const expected = zlibAdler32(data);
  assert.equal(sum.hex, expected);
  assert.equal(sum.size, data.length);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-adler-')), 'f');
  fs.writeFileSync(file, data);
  try {
    assert.deepEqual(await adler32File(file), { adler32: expected, size: data.length });
    // Small chunks through the reused buffers: every chunk counted once, in order.
    const reader = await ChecksummedFileReader.open(file, 65536 + 3, 2);
    let seen = 0;
    for (let chunk = await reader.next(); chunk; chunk = await reader.next()) {
      assert.ok(chunk.equals(data.subarray(seen, seen + chunk.length)));
      seen += chunk.length;
    }
    await reader.close();
    assert.deepEqual({ adler32: reader.hex, size: reader.size }, { adler32: expected, size: data.length });
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
});
