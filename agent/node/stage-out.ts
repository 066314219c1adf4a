/**
 * Stage-out: ctx.outputDir packed into one tar (optionally gzipped), uploaded under a name of the
 * attempt's own next to the token's results location, its size confirmed on the storage element,
 * recorded on the token, then published by a rename and described for token.output. So a retry can
 * finish: what an earlier attempt of the same token published is recognised and replaced, while
 * anything else at the location is never overwritten unless the token says `overwrite`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { redactUrl } from '../../server/redact.js';
import { EXIT, nowSeconds, type OutputFile, type Upload } from '../../server/token.js';
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

  const existing = await transfers.withRetries('stat', url, ctx.signal, ctx.log, (s) => transfers.for(url).stat(url, { signal: s })).catch(uploadFailed);
  if (existing && !ctx.token.overwrite) await earlierUploadAt(ctx, transfers, url, existing.size);

  const packed = path.join(ctx.scratchDir, `${ctx.token._id}.tar${opts.gzip ? '.gz' : ''}`);
  const tar = await import('tar'); // only when packing (docs/agent.md, Memory)
  await tar.c({ file: packed, cwd: ctx.outputDir, gzip: opts.gzip, portable: true, maxReadSize: TAR_READ_BYTES }, entries);
  // A name of this attempt's own: a killed or superseded attempt never leaves half a file, or a file
  // this token has not recorded, under the final name.
  const part = `${url}.part-${ctx.claimId}`;
  let published = false;
  try {
    const started = Date.now();
    const sent = await transfers.withRetries('upload', url, ctx.signal, ctx.log, async (s) => {
      const t = transfers.for(url);
      const result = await t.upload(packed, part, { signal: s });
      const there = await t.stat(part, { signal: s });
      if (!there) throw new TransferError(url, 'not found on the storage element right after upload', true);
      if (there.size !== result.size) throw new TransferError(url, `storage element reports ${there.size} bytes, ${result.size} were sent`, true);
      return result;
    }).catch(uploadFailed);
    const upload: Upload = { url: shown, size: sent.size, adler32: sent.adler32, attempt: ctx.token.attempts, claim_id: ctx.claimId, time: nowSeconds() };
    const recorded = await ctx.recordUpload(upload);
    // The claim was lost meanwhile (a reset, an expired lease): the token's new holder publishes, not us.
    ctx.signal.throwIfAborted();
    if (!recorded) ctx.log.warn({ url: shown }, 'the upload could not be recorded on the token (database unreachable): publishing it anyway; should this agent die before the outcome is recorded, the next attempt will find an output it cannot tell for its own');
    // Something there now is the token's to replace (overwrite, or an earlier attempt's), or it would have failed above.
    await publish(ctx, transfers, part, url, existing !== null);
    published = true;
    ctx.log.info({ url: shown, bytes: sent.size, adler32: sent.adler32, mbPerS: rate(sent.size, (Date.now() - started) / 1000) }, 'results staged out');
    await removeEarlierParts(ctx, transfers, url);
    return [{ url: shown, size: sent.size, adler32: sent.adler32, attempt: ctx.token.attempts }];
  } finally {
    fs.rmSync(packed, { force: true });
    if (!published) await removeQuietly(transfers, part, ctx);
  }
}

/**
 * Something is at the results location and the token does not say overwrite: it may only be replaced
 * when it is an upload an earlier attempt of this token recorded (same URL and size, and the same
 * adler32 when the storage can tell it), e.g. of an agent killed after publishing, before it recorded
 * the outcome. Anything else is someone else's data: `output exists`.
 */
async function earlierUploadAt(ctx: PhaseContext, transfers: Transfers, url: string, size: number): Promise<void> {
  const shown = redactUrl(url);
  const exists = (why: string) =>
    new PhaseError('output exists', EXIT.outputExists, false, `${shown} (${size} bytes) is already there and ${why}; set overwrite on the token to replace it`);
  const ours = (ctx.token.stage_out_uploads ?? []).filter((u) => u.url === shown && u.size === size && u.claim_id !== ctx.claimId);
  if (ours.length === 0) throw exists('is not an upload of this token');
  const sum = await transfers
    .withRetries('checksum', url, ctx.signal, ctx.log, (s) => transfers.for(url).checksum(url, { signal: s }))
    .catch(uploadFailed);
  const match = (sum === null ? ours : ours.filter((u) => u.adler32 === sum)).at(-1);
  if (!match) throw exists(`its adler32 ${sum} is none of this token's uploads`);
  ctx.log.info({ url: shown, earlier_attempt: match.attempt, verified: sum === null ? 'size' : 'size and adler32' }, "an earlier attempt of this token published the results already: this attempt's replace them");
}

/** Renames the attempt's upload to the final name; replaces only what the token may replace. */
async function publish(ctx: PhaseContext, transfers: Transfers, part: string, url: string, replace: boolean): Promise<void> {
  const rename = (replace: boolean) =>
    transfers.withRetries('publish', url, ctx.signal, ctx.log, (s) => transfers.for(url).rename(part, url, { signal: s, replace })).catch((err: unknown) => {
      if (err instanceof TransferError) {
        throw new PhaseError('upload failed', EXIT.uploadFailed, err.retryable, `publishing the upload as ${redactUrl(url)} (a rename on the storage element, WebDAV MOVE): ${err.causeText}`);
      }
      throw err;
    });
  if (await rename(replace)) return;
  // Something arrived since we looked (another attempt of this token, or someone else): look again.
  const there = await transfers.withRetries('stat', url, ctx.signal, ctx.log, (s) => transfers.for(url).stat(url, { signal: s })).catch(uploadFailed);
  if (there) await earlierUploadAt(ctx, transfers, url, there.size);
  if (!(await rename(true))) throw new PhaseError('upload failed', EXIT.uploadFailed, true, `${redactUrl(url)}: the storage element refused to replace it`);
}

/**
 * The uploads of earlier attempts that never got published (killed between upload and rename): this
 * attempt's success makes them garbage. Only tokens that ran before pay the requests.
 */
async function removeEarlierParts(ctx: PhaseContext, transfers: Transfers, url: string): Promise<void> {
  const claims = new Set([...ctx.token.history.filter((a) => a.reason !== 'done').map((a) => a.claim_id), ...(ctx.token.stage_out_uploads ?? []).map((u) => u.claim_id)]);
  claims.delete(ctx.claimId);
  await Promise.all([...claims].map((id) => removeQuietly(transfers, `${url}.part-${id}`, ctx)));
}

function uploadFailed(err: unknown): never {
  if (err instanceof TransferError) throw new PhaseError('upload failed', EXIT.uploadFailed, err.retryable, err.message);
  throw err;
}

const CLEANUP_TIMEOUT_MS = 30_000;

/** Best effort, also after the attempt was stopped: what is left is only a stray file. */
async function removeQuietly(transfers: Transfers, url: string, ctx: PhaseContext): Promise<void> {
  try {
    await transfers.for(url).remove(url, { signal: AbortSignal.timeout(CLEANUP_TIMEOUT_MS) });
  } catch (err) {
    ctx.log.debug({ url: redactUrl(url), err: err instanceof Error ? err.message : String(err) }, 'could not remove an unpublished upload');
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
