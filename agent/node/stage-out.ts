/**
 * Stage-out: ctx.outputDir packed into one tar (optionally gzipped), uploaded to the token's
 * results location, its size confirmed on the storage element, and described for token.output.
 * An existing result is never overwritten unless the token says `overwrite`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { redactUrl } from '../../server/redact.js';
import { EXIT, type OutputFile } from '../../server/token.js';
import { PhaseError, type PhaseContext } from '../phases.js';
import { expandTemplate, templateProblems } from './results-location.js';
import { rate, TAR_READ_BYTES, toUrl } from './stage-in.js';
import { TransferError, type Transfers } from './transfer/index.js';

export interface StageOutOptions {
  transfers: Transfers;
  /** The agent's --results template, used when the token has none */
  results?: string;
  resultsBase?: string;
  gzip: boolean;
  /** Where outputs are kept when there is no results location at all */
  localResults: string;
}

export async function stageOut(ctx: PhaseContext, opts: StageOutOptions): Promise<OutputFile[]> {
  const entries = fs.existsSync(ctx.outputDir) ? fs.readdirSync(ctx.outputDir) : [];
  if (entries.length === 0) {
    ctx.log.warn({ outputDir: ctx.outputDir }, 'the step wrote nothing to its output directory; nothing to stage out');
    return [];
  }
  const template = ctx.token.results ?? opts.results;
  if (!template) return keepLocally(ctx, opts.localResults);

  const problems = templateProblems(template, opts.resultsBase);
  if (problems.length > 0) throw new PhaseError('upload failed', EXIT.uploadFailed, false, `results template ${template}: ${problems.join('; ')}`);
  let url = toUrl(expandTemplate(template, ctx.token, opts.resultsBase));
  if (opts.gzip && url.endsWith('.tar')) url += '.gz';
  const shown = redactUrl(url);
  const { transfers } = opts;
  const fail = (err: unknown): never => {
    if (err instanceof TransferError) throw new PhaseError('upload failed', EXIT.uploadFailed, err.retryable, err.message);
    throw err;
  };

  const existing = await transfers.withRetries('stat', url, ctx.signal, ctx.log, (s) => transfers.for(url).stat(url, { signal: s })).catch(fail);
  if (existing && !ctx.token.overwrite) {
    throw new PhaseError('output exists', EXIT.outputExists, false, `${shown} (${existing.size} bytes) is already there; set overwrite on the token to replace it`);
  }

  const packed = path.join(ctx.scratchDir, `${ctx.token._id}.tar${opts.gzip ? '.gz' : ''}`);
  const tar = await import('tar'); // only when packing (docs/agent.md, Memory)
  await tar.c({ file: packed, cwd: ctx.outputDir, gzip: opts.gzip, portable: true, maxReadSize: TAR_READ_BYTES }, entries);
  try {
    const started = Date.now();
    const sent = await transfers.withRetries('upload', url, ctx.signal, ctx.log, async (s) => {
      const t = transfers.for(url);
      const result = await t.upload(packed, url, { signal: s });
      const there = await t.stat(url, { signal: s });
      if (!there) throw new TransferError(url, 'not found on the storage element right after upload', true);
      if (there.size !== result.size) throw new TransferError(url, `storage element reports ${there.size} bytes, ${result.size} were sent`, true);
      return result;
    }).catch(fail);
    ctx.log.info({ url: shown, bytes: sent.size, adler32: sent.adler32, mbPerS: rate(sent.size, (Date.now() - started) / 1000) }, 'results staged out');
    return [{ url: shown, size: sent.size, adler32: sent.adler32 }];
  } finally {
    fs.rmSync(packed, { force: true });
  }
}

/** No results location: the outputs move out of the scratch directory (which the agent cleans) to <localResults>/<token id>. */
async function keepLocally(ctx: PhaseContext, localResults: string): Promise<OutputFile[]> {
  const dest = path.join(localResults, ctx.token._id);
  if (fs.existsSync(dest)) {
    if (!ctx.token.overwrite) throw new PhaseError('output exists', EXIT.outputExists, false, `${dest} is already there; set overwrite on the token to replace it`);
    fs.rmSync(dest, { recursive: true, force: true });
  }
  fs.mkdirSync(localResults, { recursive: true });
  try {
    fs.renameSync(ctx.outputDir, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await fs.promises.cp(ctx.outputDir, dest, { recursive: true, verbatimSymlinks: true });
  }
  ctx.log.info({ dir: dest }, 'no results location: outputs kept on this node');
  return [];
}
