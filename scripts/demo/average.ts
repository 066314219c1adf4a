#!/usr/bin/env node
/**
 * The demo's processing step, run by `tokenpool agent` for each token: averages every measurement
 * set staged into $INPUT_DIR in time and frequency, and writes the averaged set plus its mean
 * amplitude spectrum to $OUTPUT_DIR (which the agent packs and stages out).
 *   node average.js [--time N] [--freq N]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { average, readMs, spectrum, writeMs } from './visibilities.js';

function main(): number {
  const { values } = parseArgs({ options: { time: { type: 'string', default: '4' }, freq: { type: 'string', default: '8' } } });
  const timeAvg = Number(values.time);
  const freqAvg = Number(values.freq);
  if (!Number.isInteger(timeAvg) || timeAvg < 1 || !Number.isInteger(freqAvg) || freqAvg < 1) {
    process.stderr.write('average: --time and --freq must be whole numbers ≥ 1\n');
    return 2;
  }
  const input = process.env.INPUT_DIR;
  const output = process.env.OUTPUT_DIR;
  if (!input || !output) {
    process.stderr.write('average: INPUT_DIR and OUTPUT_DIR must be set (the agent sets them)\n');
    return 2;
  }
  const sets = fs.readdirSync(input).filter((n) => n.endsWith('.MS') && fs.statSync(path.join(input, n)).isDirectory());
  if (sets.length === 0) {
    process.stderr.write(`average: no measurement set (*.MS) in ${input}\n`);
    return 1;
  }
  fs.mkdirSync(output, { recursive: true });
  for (const name of sets.sort()) {
    const ms = readMs(path.join(input, name));
    const avg = average(ms, timeAvg, freqAvg);
    const outName = name.replace(/\.MS$/, `.avg${timeAvg}x${freqAvg}.MS`);
    writeMs(path.join(output, outName), avg);
    const spec = spectrum(avg);
    fs.writeFileSync(
      path.join(output, `${outName}.spectrum.json`),
      JSON.stringify({ obsid: avg.meta.obsid, subband: avg.meta.subband, freq0: avg.meta.freq0, chanWidth: avg.meta.chanWidth, meanAmplitude: spec }, null, 2) + '\n',
    );
    process.stdout.write(
      `${name}: ${ms.meta.ntime}×${ms.meta.nchan} → ${avg.meta.ntime}×${avg.meta.nchan} (time × channels), ` +
        `mean amplitude ${(spec.reduce((a, b) => a + b, 0) / spec.length).toFixed(3)}\n`,
    );
  }
  return 0;
}

process.exitCode = main();
