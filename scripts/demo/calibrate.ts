#!/usr/bin/env node
/**
 * The later steps of the demo pipeline (examples/pipelines/linc-demo.yaml), LINC's calibrator →
 * target shape on the synthetic measurement sets, each run by `tokenpool agent` in its scratch:
 *   solve   all averaged calibrator subbands in $INPUT_DIR → solutions.json (a gain per subband)
 *   apply   a target subband's raw set + solutions.json → the averaged, calibrated set
 *   concat  the calibrated sets of a group of subbands → one set, concatenated in frequency
 * Outputs go to $OUTPUT_DIR, which the agent packs and stages out.
 *   node calibrate.js solve | apply [--time N] [--freq N] | concat
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { average, readMs, spectrum, writeMs, type Ms } from './visibilities.js';

interface Solutions {
  obsid: string;
  /** subband → centre frequency (Hz) and amplitude gain */
  gains: Record<string, { freq: number; gain: number }>;
}

/** The model the synthetic data were made from (visibilities.ts): 10 Jy at 150 MHz, index −0.7, half per polarisation. */
const modelAmplitude = (freq: number) => (10 * Math.pow(freq / 150e6, -0.7)) / 2;

function sets(dir: string, suffix: RegExp): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => suffix.test(n) && fs.statSync(path.join(dir, n)).isDirectory())
    .sort()
    .map((n) => path.join(dir, n));
}

function solve(input: string, output: string): string {
  const found = sets(input, /\.MS$/);
  if (found.length === 0) throw new Error(`no measurement set (*.MS) in ${input}`);
  const gains: Solutions['gains'] = {};
  let obsid = '';
  for (const dir of found) {
    const ms = readMs(dir);
    obsid = ms.meta.obsid;
    const spec = spectrum(ms);
    const freq = ms.meta.freq0 + ((ms.meta.nchan - 1) * ms.meta.chanWidth) / 2;
    gains[String(ms.meta.subband)] = { freq, gain: spec.reduce((a, b) => a + b, 0) / spec.length / modelAmplitude(freq) };
  }
  const solutions: Solutions = { obsid, gains };
  fs.writeFileSync(path.join(output, 'solutions.json'), JSON.stringify(solutions, null, 2) + '\n');
  return `solved ${found.length} calibrator subbands of ${obsid}`;
}

function apply(input: string, output: string, timeAvg: number, freqAvg: number): string {
  const file = findFile(input, 'solutions.json');
  const solutions = JSON.parse(fs.readFileSync(file, 'utf8')) as Solutions;
  const raw = sets(input, /_uv\.MS$/);
  if (raw.length === 0) throw new Error(`no raw target set (*_uv.MS) in ${input}`);
  const lines: string[] = [];
  for (const dir of raw) {
    const avg = average(readMs(dir), timeAvg, freqAvg);
    const freq = avg.meta.freq0 + ((avg.meta.nchan - 1) * avg.meta.chanWidth) / 2;
    // The calibrator subband nearest in frequency gives the gain.
    const nearest = Object.values(solutions.gains).reduce((best, g) => (Math.abs(g.freq - freq) < Math.abs(best.freq - freq) ? g : best));
    for (let i = 0; i < avg.data.length; i++) avg.data[i]! /= nearest.gain;
    const name = path.basename(dir).replace(/_uv\.MS$/, '.cal.MS');
    writeMs(path.join(output, name), { meta: { ...avg.meta, calibratedWith: solutions.obsid } as Ms['meta'], data: avg.data });
    lines.push(`${path.basename(dir)} → ${name} (gain ${nearest.gain.toFixed(3)})`);
  }
  return lines.join('\n');
}

function concat(input: string, output: string): string {
  const parts = sets(input, /\.cal\.MS$/).map(readMs).sort((a, b) => a.meta.freq0 - b.meta.freq0);
  if (parts.length === 0) throw new Error(`no calibrated set (*.cal.MS) in ${input}`);
  const first = parts[0]!.meta;
  for (const p of parts) {
    if (p.meta.ntime !== first.ntime || p.meta.nbaseline !== first.nbaseline || p.meta.npol !== first.npol) throw new Error(`subband ${p.meta.subband} has another shape than subband ${first.subband}`);
  }
  const nchan = parts.reduce((n, p) => n + p.meta.nchan, 0);
  const data = new Float32Array(first.ntime * first.nbaseline * nchan * first.npol * 2);
  const row = first.npol * 2;
  for (let t = 0; t < first.ntime; t++) {
    for (let b = 0; b < first.nbaseline; b++) {
      let c0 = 0;
      for (const p of parts) {
        const src = ((t * first.nbaseline + b) * p.meta.nchan) * row;
        data.set(p.data.subarray(src, src + p.meta.nchan * row), ((t * first.nbaseline + b) * nchan + c0) * row);
        c0 += p.meta.nchan;
      }
    }
  }
  const subbands = parts.map((p) => p.meta.subband);
  const pad = (n: number) => String(n).padStart(3, '0');
  const name = `${first.obsid}_SB${pad(subbands[0]!)}-${pad(subbands.at(-1)!)}.concat.MS`;
  writeMs(path.join(output, name), { meta: { ...first, nchan, subbands } as Ms['meta'], data });
  return `${name}: ${parts.length} subbands, ${nchan} channels`;
}

function findFile(dir: string, name: string): string {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isFile() && entry.name === name) return p;
    if (entry.isDirectory()) {
      try {
        return findFile(p, name);
      } catch {
        // not in this directory
      }
    }
  }
  throw new Error(`no ${name} in ${dir}`);
}

function main(): number {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { time: { type: 'string', default: '4' }, freq: { type: 'string', default: '8' } } });
  const input = process.env.INPUT_DIR;
  const output = process.env.OUTPUT_DIR;
  if (!input || !output) {
    process.stderr.write('calibrate: INPUT_DIR and OUTPUT_DIR must be set (the agent sets them)\n');
    return 2;
  }
  fs.mkdirSync(output, { recursive: true });
  try {
    const what = positionals[0];
    if (what === 'solve') process.stdout.write(solve(input, output) + '\n');
    else if (what === 'apply') process.stdout.write(apply(input, output, Number(values.time), Number(values.freq)) + '\n');
    else if (what === 'concat') process.stdout.write(concat(input, output) + '\n');
    else {
      process.stderr.write('calibrate: give solve, apply or concat\n');
      return 2;
    }
    return 0;
  } catch (err) {
    process.stderr.write(`calibrate ${positionals[0]}: ${(err as Error).message}\n`);
    return 1;
  }
}

process.exitCode = main();
