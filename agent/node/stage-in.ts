/**
 * Stage-in: every input of the token fetched into the scratch directory, checked against the
 * token's size and adler32, and unpacked (measurement sets travel as .tar) into ctx.inputDir. A
 * file that fails verification is deleted at once: the step never sees it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { redactUrl } from '../../server/redact.js';
import { EXIT, inputFilesOf, type InputFile } from '../../server/token.js';
import { PhaseError, type PhaseContext } from '../phases.js';
import { TransferError, type Transfers } from './transfer/index.js';

/**
 * tar reads archives and files in pieces of this size (its default, 16 MiB, is a fresh buffer per
 * read that lives until the next garbage collection: tens of MB with a small heap).
 */
export const TAR_READ_BYTES = 1 << 20;

export interface StageInOptions {
  transfers: Transfers;
  /** Files fetched at the same time */
  parallel: number;
}

export async function stageIn(ctx: PhaseContext, opts: StageInOptions): Promise<void> {
  const downloadDir = path.join(ctx.scratchDir, 'download');
  fs.mkdirSync(downloadDir, { recursive: true });
  fs.mkdirSync(ctx.inputDir, { recursive: true });
  // One failure stops the others: no point fetching the rest of a token that will not run.
  const stop = new AbortController();
  const signal = AbortSignal.any([ctx.signal, stop.signal]);
  const files = inputFilesOf(ctx.token);
  const names = localNames(files);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      await fetchOne(ctx, files[i]!, path.join(downloadDir, names[i]!), opts.transfers, signal);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.parallel, files.length)) }, worker));
  } catch (err) {
    stop.abort();
    throw err;
  } finally {
    fs.rmSync(downloadDir, { recursive: true, force: true });
  }
}

async function fetchOne(ctx: PhaseContext, input: InputFile, dest: string, transfers: Transfers, signal: AbortSignal): Promise<void> {
  const url = toUrl(input.url);
  const shown = redactUrl(input.url);
  const started = Date.now();
  let got;
  try {
    got = await transfers.withRetries('download', url, signal, ctx.log, (s) => transfers.for(url).download(url, dest, { signal: s }), input.auth ? [input.auth] : undefined);
  } catch (err) {
    fs.rmSync(dest, { force: true });
    if (err instanceof TransferError) throw new PhaseError('download failed', EXIT.downloadFailed, err.retryable, err.message);
    throw err;
  }
  const wrongSize = input.size !== undefined && got.size !== input.size;
  const wrongSum = input.adler32 !== undefined && got.adler32 !== input.adler32.toLowerCase();
  if (wrongSize || wrongSum) {
    fs.rmSync(dest, { force: true });
    const detail = wrongSum ? `adler32 ${got.adler32}, expected ${input.adler32}` : `${got.size} bytes, expected ${input.size}`;
    ctx.log.error({ url: shown, got, expected: { size: input.size, adler32: input.adler32 } }, 'input failed verification; deleted');
    throw new PhaseError('checksum mismatch', EXIT.checksumMismatch, false, `${shown}: ${detail}`);
  }
  const seconds = (Date.now() - started) / 1000;
  ctx.log.info({ url: shown, bytes: got.size, adler32: got.adler32, verified: input.adler32 !== undefined, mbPerS: rate(got.size, seconds) }, 'input staged in');
  if (/\.(tar|tar\.gz|tgz)$/i.test(dest)) {
    // Loaded on first use: tokens without tar inputs never need it (docs/agent.md, Memory).
    const tar = await import('tar');
    try {
      await tar.x({ file: dest, cwd: ctx.inputDir, strict: true, maxReadSize: TAR_READ_BYTES });
    } catch (err) {
      throw new PhaseError('download failed', EXIT.downloadFailed, false, `${shown}: not a readable tar archive (${(err as Error).message})`);
    } finally {
      fs.rmSync(dest, { force: true });
    }
  } else {
    fs.renameSync(dest, path.join(ctx.inputDir, path.basename(dest)));
  }
}

/** A plain absolute path is a file:// URL. */
export function toUrl(url: string): string {
  return url.startsWith('/') ? pathToFileURL(url).href : url;
}

/** The last path segment of each URL, made safe and unique within the token. */
function localNames(inputs: readonly InputFile[]): string[] {
  const seen = new Set<string>();
  return inputs.map((input, i) => {
    let name: string;
    try {
      name = decodeURIComponent(new URL(toUrl(input.url)).pathname.split('/').pop() ?? '');
    } catch {
      name = '';
    }
    name = name.replace(/[^A-Za-z0-9_.,+=-]/g, '_');
    if (!name || name === '.' || name === '..') name = `input-${i}`;
    if (seen.has(name)) name = `${i}-${name}`;
    seen.add(name);
    return name;
  });
}

export function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? Math.round((bytes / 1e6 / seconds) * 10) / 10 : 0;
}
