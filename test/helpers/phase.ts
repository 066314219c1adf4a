/** The parts of a PhaseContext the agent's attempt provides, for tests that run phases on their own. */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../server/log.js';
import { newToken, nowSeconds, type NewToken, type Token } from '../../server/token.js';
import type { PhaseContext } from '../../agent/phases.js';

/** A fresh claim id, and uploads recorded on `token` itself, as the attempt records them on the stored token. */
export function attemptParts(token: Token): Pick<PhaseContext, 'claimId' | 'recordUpload'> {
  return {
    claimId: randomUUID(),
    recordUpload: async (upload) => {
      token.stage_out_uploads = [...(token.stage_out_uploads ?? []), { ...upload, time: upload.time || nowSeconds() }];
      return true;
    },
  };
}

let scratchDirs = 0;

/**
 * A token of `spec` (attempt 1) with a PhaseContext in a fresh scratch directory under `work`, as the
 * agent builds it, and the debug log the phases wrote, as text (one JSON line per record).
 */
export function phaseHarness(work: string, spec: Partial<NewToken>): { ctx: PhaseContext; logs: () => string } {
  const n = ++scratchDirs;
  const scratchDir = path.join(work, `scratch-${n}`);
  fs.mkdirSync(scratchDir, { recursive: true });
  const chunks: string[] = [];
  const stream = new PassThrough();
  stream.on('data', (c: Buffer) => chunks.push(c.toString()));
  const token = newToken({ obsid: 'L229507', step: 'cal1', subbands: [100 + n], ...spec });
  token.attempts = 1;
  const ctx: PhaseContext = {
    token,
    scratchDir,
    inputDir: path.join(scratchDir, 'input'),
    outputDir: path.join(scratchDir, 'output'),
    env: {},
    log: createLogger('test', { destination: stream, pretty: false, level: 'debug' }),
    signal: new AbortController().signal,
    ...attemptParts(token),
  };
  return { ctx, logs: () => chunks.join('') };
}
