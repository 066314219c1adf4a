/**
 * The demo's synthetic measurement sets: a directory <name>.MS holding meta.json and DATA, the
 * visibilities as little-endian float32 (re, im) pairs ordered [time][baseline][channel][polarisation].
 * Not a casacore table: small, self-describing, and enough for a real averaging step to chew on.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface MsMeta {
  obsid: string;
  subband: number;
  ntime: number;
  nbaseline: number;
  nchan: number;
  npol: number;
  /** centre frequency of channel 0, Hz */
  freq0: number;
  chanWidth: number;
  /** seconds between time samples */
  interval: number;
  /** averaging already applied (1 = raw) */
  timeAvg: number;
  freqAvg: number;
}

export interface Ms {
  meta: MsMeta;
  data: Float32Array;
}

export function readMs(dir: string): Ms {
  const meta = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as MsMeta;
  const buf = fs.readFileSync(path.join(dir, 'DATA'));
  const expected = meta.ntime * meta.nbaseline * meta.nchan * meta.npol * 2;
  if (buf.byteLength !== expected * 4) {
    throw new Error(`${dir}/DATA holds ${buf.byteLength} bytes, meta.json promises ${expected * 4}`);
  }
  const data = new Float32Array(expected);
  for (let i = 0; i < expected; i++) data[i] = buf.readFloatLE(i * 4);
  return { meta, data };
}

export function writeMs(dir: string, ms: Ms): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(ms.meta, null, 2) + '\n');
  const buf = Buffer.alloc(ms.data.length * 4);
  for (let i = 0; i < ms.data.length; i++) buf.writeFloatLE(ms.data[i]!, i * 4);
  fs.writeFileSync(path.join(dir, 'DATA'), buf);
}

/** Deterministic pseudo-random numbers (mulberry32), so a subband's data is the same every run. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A point source of 10 Jy at 150 MHz with spectral index −0.7, seen on each baseline with a phase
 * that turns with time and frequency (fringe), plus Gaussian noise.
 */
export function synthesise(obsid: string, subband: number, shape: { ntime: number; nbaseline: number; nchan: number }): Ms {
  const npol = 2;
  const chanWidth = 195312.5 / shape.nchan;
  const freq0 = 100e6 + subband * 195312.5;
  const meta: MsMeta = { obsid, subband, ...shape, npol, freq0, chanWidth, interval: 1.00139, timeAvg: 1, freqAvg: 1 };
  const rnd = random(Number(obsid.slice(1)) * 1000 + subband);
  const gauss = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());
  const data = new Float32Array(shape.ntime * shape.nbaseline * shape.nchan * npol * 2);
  let i = 0;
  for (let t = 0; t < shape.ntime; t++) {
    for (let b = 0; b < shape.nbaseline; b++) {
      const rate = 0.002 * (b + 1);
      for (let c = 0; c < shape.nchan; c++) {
        const f = freq0 + c * chanWidth;
        const flux = 10 * Math.pow(f / 150e6, -0.7);
        const phase = 2 * Math.PI * (rate * t + (b * f) / 3e9);
        for (let p = 0; p < npol; p++) {
          data[i++] = (flux / 2) * Math.cos(phase) + 0.5 * gauss();
          data[i++] = (flux / 2) * Math.sin(phase) + 0.5 * gauss();
        }
      }
    }
  }
  return { meta, data };
}

/** Averages in time and frequency (the last, partial block is averaged over what it has). */
export function average(ms: Ms, timeAvg: number, freqAvg: number): Ms {
  const { ntime, nbaseline, nchan, npol } = ms.meta;
  const nt = Math.ceil(ntime / timeAvg);
  const nc = Math.ceil(nchan / freqAvg);
  const out = new Float32Array(nt * nbaseline * nc * npol * 2);
  const count = new Uint32Array(nt * nbaseline * nc);
  const at = (t: number, b: number, c: number, p: number) => (((t * nbaseline + b) * nchan + c) * npol + p) * 2;
  for (let t = 0; t < ntime; t++) {
    for (let b = 0; b < nbaseline; b++) {
      for (let c = 0; c < nchan; c++) {
        const cell = (Math.floor(t / timeAvg) * nbaseline + b) * nc + Math.floor(c / freqAvg);
        count[cell]!++;
        for (let p = 0; p < npol; p++) {
          const src = at(t, b, c, p);
          const dst = (cell * npol + p) * 2;
          out[dst]! += ms.data[src]!;
          out[dst + 1]! += ms.data[src + 1]!;
        }
      }
    }
  }
  for (let cell = 0; cell < count.length; cell++) {
    for (let k = 0; k < npol * 2; k++) out[cell * npol * 2 + k]! /= count[cell]!;
  }
  const meta: MsMeta = {
    ...ms.meta,
    ntime: nt,
    nchan: nc,
    interval: ms.meta.interval * timeAvg,
    chanWidth: ms.meta.chanWidth * freqAvg,
    freq0: ms.meta.freq0 + ((freqAvg - 1) * ms.meta.chanWidth) / 2,
    timeAvg: ms.meta.timeAvg * timeAvg,
    freqAvg: ms.meta.freqAvg * freqAvg,
  };
  return { meta, data: out };
}

/** Mean visibility amplitude per (averaged) channel: what the demo reports as its science result. */
export function spectrum(ms: Ms): number[] {
  const { ntime, nbaseline, nchan, npol } = ms.meta;
  const sums = new Array<number>(nchan).fill(0);
  let i = 0;
  for (let t = 0; t < ntime; t++)
    for (let b = 0; b < nbaseline; b++)
      for (let c = 0; c < nchan; c++)
        for (let p = 0; p < npol; p++, i += 2) sums[c]! += Math.hypot(ms.data[i]!, ms.data[i + 1]!);
  return sums.map((s) => s / (ntime * nbaseline * npol));
}
