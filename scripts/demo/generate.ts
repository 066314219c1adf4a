/**
 * The demo's input data: one tar per subband with a LOFAR name (L<obsid>_SB<NNN>_uv.MS_<8 hex>.tar)
 * holding a synthetic measurement set, and a SURL-style list of their file:// URLs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { synthesise, writeMs } from './visibilities.js';

export interface GeneratedObservation {
  obsid: string;
  files: string[];
  /** the SURL list: one file:// URL per line */
  surlList: string;
}

export interface GenerateOptions {
  dir: string;
  obsid: string;
  subbands: number;
  /** first subband number (LOFAR HBA observations often start near 100) */
  firstSubband?: number;
  shape?: { ntime: number; nbaseline: number; nchan: number };
}

export const DEMO_SHAPE = { ntime: 120, nbaseline: 28, nchan: 64 };

export async function generateObservation(opts: GenerateOptions): Promise<GeneratedObservation> {
  const dataDir = path.join(opts.dir, 'lta', opts.obsid);
  fs.mkdirSync(dataDir, { recursive: true });
  const staging = fs.mkdtempSync(path.join(opts.dir, '.ms-'));
  const files: string[] = [];
  try {
    for (let i = 0; i < opts.subbands; i++) {
      const sb = (opts.firstSubband ?? 100) + i;
      const msName = `${opts.obsid}_SB${String(sb).padStart(3, '0')}_uv.MS`;
      writeMs(path.join(staging, msName), synthesise(opts.obsid, sb, opts.shape ?? DEMO_SHAPE));
      // The LTA appends 8 hex digits to a measurement set's tar name; ours come from the name.
      const tag = createHash('sha1').update(msName).digest('hex').slice(0, 8);
      const file = path.join(dataDir, `${msName}_${tag}.tar`);
      await tar.c({ file, cwd: staging, portable: true }, [msName]);
      fs.rmSync(path.join(staging, msName), { recursive: true });
      files.push(file);
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  const surlList = path.join(opts.dir, `${opts.obsid}.surls.txt`);
  const lines = [`# ${opts.obsid}: ${files.length} subbands, synthetic data made by the tokenpool demo`, ...files.map((f) => pathToFileURL(f).href)];
  fs.writeFileSync(surlList, lines.join('\n') + '\n');
  return { obsid: opts.obsid, files, surlList };
}
