/**
 * Tape staging for tokens in status `staging`: one stage request per observation and site, its id
 * recorded on the tokens; each round asks which files are online, moves tokens whose inputs are
 * all online to `todo`, and marks tokens that will not come online as error "not staged" (at the
 * deadline, at the threshold, or when the stager has finished with the request) so that the rest
 * of the observation can go on.
 */
import type { Pool } from '../../server/client.js';
import type { Logger } from '../../server/log.js';
import { EXIT, inputFilesOf, nowSeconds, type Token } from '../../server/token.js';
import { bringOnline } from './gfal-bringonline.js';
import { LTA_FINISHED, type LtaStager } from './lta-stager.js';
import { STAGEIT_FINISHED, type StageIt } from './stageit.js';
import { saveMacaroons, type MacaroonEntry } from '../node/credentials/macaroon-file.js';

/** What the stager records on a token (field `staging`). */
export type StagingMethod = 'lta' | 'gfal' | 'stageit';

export interface StagingRecord {
  method: StagingMethod;
  /** The LTA stager's request id (gfal has none) */
  request_id: number | null;
  /** Unix time of the request */
  requested: number;
  /** Files in the whole request (for the percentage) */
  request_files: number;
  /** Unix time the token's inputs were all online */
  online?: number;
}

export interface PollResult {
  online: Set<string>;
  /** Files the storage says cannot be staged, with why */
  failed: Map<string, string>;
  /** The stager has stopped working on the request */
  finished: boolean;
  status: string;
  /** The stager's own percentage, when it gives one */
  stagerPercent?: number;
  /** URL → the URL to read it from once online (StageIT's WebDAV URLs); the token's input is rewritten */
  readFrom?: Map<string, { url: string; auth: 'macaroon' }>;
}

export interface StagingBackend {
  method: StagingMethod;
  request(surls: string[]): Promise<number | null>;
  poll(requestId: number | null, surls: string[]): Promise<PollResult>;
}

export function ltaBackend(stager: LtaStager): StagingBackend {
  return {
    method: 'lta',
    request: (surls) => stager.request(surls),
    async poll(id) {
      if (id === null) throw new Error('token has an LTA staging record without a request id');
      const [status, online, progress] = await Promise.all([stager.status(id), stager.stagedUrls(id), stager.progress()]);
      return { online: new Set(online), failed: new Map(), finished: LTA_FINISHED.includes(status), status, stagerPercent: progress.get(id)?.percentDone };
    },
  };
}

export function gfalBackend(pinLifetimeS: number, env: NodeJS.ProcessEnv): StagingBackend {
  const poll = async (surls: string[]): Promise<PollResult> => {
    const { files, callError } = await bringOnline(surls, { pinLifetimeS, env });
    // The storage did not answer for the files: they wait (the deadline still applies), the status says why.
    if (callError !== undefined) return { online: new Set(), failed: new Map(), finished: false, status: `gfal-bringonline failed: ${callError}` };
    const online = new Set<string>();
    const failed = new Map<string, string>();
    for (const [surl, s] of files) {
      if (s.state === 'ready') online.add(surl);
      else if (s.state === 'failed') failed.set(surl, s.message);
    }
    const finished = online.size + failed.size === surls.length;
    return { online, failed, finished, status: finished ? 'done' : 'in progress' };
  };
  return {
    method: 'gfal',
    // bring-online is idempotent: the first poll, right after, issues the request.
    request: async () => null,
    poll: (_id, surls) => poll(surls),
  };
}

/**
 * StageIT: a request per batch, resumed rather than asked again (a request for exactly these SURLs
 * made in the last `resumeWindowS` is taken over); once files are online their WebDAV URLs
 * replace the SURLs on the tokens and the request's macaroons go to the macaroons file (0600),
 * never into the pool.
 */
export function stageItBackend(client: StageIt, macaroonsFile: string, resumeWindowS = 30 * 86400): StagingBackend {
  return {
    method: 'stageit',
    request: async (surls) => (await client.findRequest(surls, new Date(Date.now() - resumeWindowS * 1000))) ?? client.request(surls),
    async poll(id) {
      if (id === null) throw new Error('token has a StageIT staging record without a request id');
      const r = await client.status(id);
      const readFrom = new Map<string, { url: string; auth: 'macaroon' }>();
      if (r.online.length > 0) {
        const webdav = await client.webdavUrls(id);
        for (const surl of r.online) {
          const url = webdavFor(surl, webdav);
          if (url) readFrom.set(surl, { url, auth: 'macaroon' });
        }
        if (r.macaroons.length > 0) saveMacaroons(macaroonsFile, macaroonEntries(r.macaroons, webdav, id));
      }
      // Online means readable: a file without its WebDAV URL or macaroon waits.
      const online = new Set(r.macaroons.length > 0 ? readFrom.keys() : []);
      return { online, failed: r.errors, finished: STAGEIT_FINISHED.includes(r.status), status: r.status, readFrom };
    },
  };
}

/** The WebDAV URL of a SURL: the one whose path ends with the SURL's path from /pnfs/ (or its file name). */
function webdavFor(surl: string, webdav: string[]): string | undefined {
  const p = new URL(surl).pathname;
  const tail = p.includes('/pnfs/') ? p.slice(p.indexOf('/pnfs/')) : p.slice(p.lastIndexOf('/'));
  return webdav.find((u) => new URL(u).pathname.endsWith(tail));
}

/** One entry per site; the WebDAV hosts go to the site whose domain they are in (or all to the only site). */
function macaroonEntries(macaroons: Array<{ site: string; content: string; validUntil?: string }>, webdav: string[], requestId: number): MacaroonEntry[] {
  const hosts = [...new Set(webdav.map((u) => new URL(u).host))];
  return macaroons.map((m) => ({
    site: m.site,
    hosts: macaroons.length === 1 ? hosts : hosts.filter((h) => siteOfHost(h) === m.site.toLowerCase()),
    content: m.content,
    ...(m.validUntil ? { validUntil: m.validUntil } : {}),
    request_id: requestId,
  }));
}

function siteOfHost(host: string): string {
  if (/surfsara\.nl|grid\.sara\.nl|surf\.nl/i.test(host)) return 'surf';
  if (/fz-juelich\.de/i.test(host)) return 'juelich';
  if (/poznan\.pl|psnc\.pl/i.test(host)) return 'poznan';
  return '';
}

export interface StageOptions {
  pool: Pool;
  backend: StagingBackend;
  /** Most files in one new request (tokens are not split across requests) */
  batchFiles?: number;
  /** Seconds after the request after which files not online are given up on */
  deadlineS?: number;
  /** Percentage of a request's files online at which the rest are given up on */
  thresholdPct?: number;
  log: Logger;
}

export interface GroupReport {
  obsid: string | null;
  site: string | null;
  requestId: number | null;
  status: string;
  files: number;
  online: number;
  percent: number;
  stagerPercent?: number;
  movedToTodo: number;
  notStaged: number;
  waiting: number;
}

/** One round over every staging token. */
export async function stageRound(opts: StageOptions): Promise<GroupReport[]> {
  const tokens = await stagingTokens(opts.pool);
  const reports: GroupReport[] = [];
  for (const group of groupTokens(tokens, opts.batchFiles)) {
    let record = stagingRecord(group[0]!);
    const surls = uniqueInputs(group);
    if (surls.length === 0) {
      // Nothing to stage: straight to todo.
      for (const t of group) await moveToTodo(opts.pool, t, record);
      continue;
    }
    if (!record || record.method !== opts.backend.method) {
      const id = await opts.backend.request(surls);
      record = { method: opts.backend.method, request_id: id, requested: nowSeconds(), request_files: surls.length };
      opts.log.info({ obsid: group[0]!.obsid, site: group[0]!.site, requestId: id, files: surls.length }, 'stage request submitted');
      for (const t of group) await recordRequest(opts.pool, t, record);
    }
    const poll = await opts.backend.poll(record.request_id, surls);
    const missing = surls.filter((s) => !poll.online.has(s));
    const files = Math.max(record.request_files, surls.length);
    const percent = Math.floor(((files - missing.length) / files) * 1000) / 10;
    const pastDeadline = opts.deadlineS !== undefined && nowSeconds() >= record.requested + opts.deadlineS;
    const atThreshold = opts.thresholdPct !== undefined && percent >= opts.thresholdPct;
    const settled = pastDeadline || atThreshold || poll.finished;
    const report: GroupReport = {
      obsid: group[0]!.obsid,
      site: group[0]!.site,
      requestId: record.request_id,
      status: poll.status,
      files,
      online: files - missing.length,
      percent,
      ...(poll.stagerPercent !== undefined ? { stagerPercent: poll.stagerPercent } : {}),
      movedToTodo: 0,
      notStaged: 0,
      waiting: 0,
    };
    for (const t of group) {
      const inputs = inputFilesOf(t).map((i) => i.url);
      const failed = inputs.filter((u) => poll.failed.has(u));
      const offline = inputs.filter((u) => !poll.online.has(u));
      if (offline.length === 0) {
        if (await moveToTodo(opts.pool, t, record, poll.readFrom)) report.movedToTodo++;
      } else if (failed.length > 0 || settled) {
        const why = failed.length > 0 ? `${poll.failed.get(failed[0]!)}` : pastDeadline ? 'deadline passed' : atThreshold ? `request ${percent} % online, threshold ${opts.thresholdPct} %` : `stager finished with status "${poll.status}"`;
        if (await markNotStaged(opts.pool, t, `not staged: ${offline.length} of ${inputs.length} files not online (${why})`)) report.notStaged++;
      } else report.waiting++;
    }
    reports.push(report);
  }
  return reports;
}

async function stagingTokens(pool: Pool): Promise<Token[]> {
  const out: Token[] = [];
  const pageSize = 1000;
  for (let skip = 0; ; skip += pageSize) {
    const page = await pool.db.find({ selector: { type: 'token', status: 'staging' }, limit: pageSize, skip });
    out.push(...(page.docs as unknown as Token[]));
    if (page.docs.length < pageSize) return out;
  }
}

/** Tokens that share a request; tokens not yet requested grouped by observation and site. */
function groupTokens(tokens: Token[], batchFiles = Number.POSITIVE_INFINITY): Token[][] {
  const groups = new Map<string, Token[]>();
  const files = new Map<string, number>();
  const batch = new Map<string, number>();
  for (const t of tokens) {
    const r = stagingRecord(t);
    let key = r ? `${r.method}:${r.request_id ?? `${t.obsid}|${t.site}|${r.requested}`}` : `new:${t.obsid}|${t.site}`;
    if (!r) {
      // New requests: at most batchFiles files each (a token's files stay together).
      const n = inputFilesOf(t).length;
      const base = key;
      const b = batch.get(base) ?? 0;
      if ((files.get(`${base}#${b}`) ?? 0) > 0 && (files.get(`${base}#${b}`) ?? 0) + n > batchFiles) batch.set(base, b + 1);
      key = `${base}#${batch.get(base) ?? 0}`;
      files.set(key, (files.get(key) ?? 0) + n);
    }
    groups.set(key, [...(groups.get(key) ?? []), t]);
  }
  return [...groups.values()];
}

function stagingRecord(t: Token): StagingRecord | null {
  const r = t.staging as StagingRecord | undefined;
  return r && typeof r === 'object' && typeof r.requested === 'number' ? r : null;
}

function uniqueInputs(tokens: Token[]): string[] {
  return [...new Set(tokens.flatMap((t) => inputFilesOf(t).map((i) => i.url)))];
}

/**
 * Applies `change` to the newest revision of a token while it is still staging; false when it
 * left staging meanwhile (someone else moved it).
 */
async function update(pool: Pool, token: Token, change: (t: Token, now: number) => void): Promise<boolean> {
  let current = token;
  for (let tries = 0; tries < 10; tries++) {
    if (current.status !== 'staging') return false;
    const now = nowSeconds();
    const next: Token = structuredClone(current);
    change(next, now);
    next.updated = now;
    try {
      await pool.db.insert(next);
      return true;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
      current = (await pool.db.get(token._id)) as Token;
    }
  }
  throw new Error(`token ${token._id}: kept conflicting with other writers`);
}

function recordRequest(pool: Pool, token: Token, record: StagingRecord): Promise<boolean> {
  return update(pool, token, (t) => {
    t.staging = record;
  });
}

function moveToTodo(pool: Pool, token: Token, record: StagingRecord | null, readFrom?: PollResult['readFrom']): Promise<boolean> {
  return update(pool, token, (t, now) => {
    if (record) t.staging = { ...record, online: now };
    if (readFrom?.size && Array.isArray(t.input)) {
      // The SURLs stay on record; the agent reads from the WebDAV URLs with the site's macaroon.
      t.staging = { ...(t.staging as object), surls: t.input.map((i) => i.url) };
      t.input = t.input.map((i) => (readFrom.has(i.url) ? { ...i, ...readFrom.get(i.url)! } : i));
    }
    t.status = 'todo';
    t.times = { ...t.times, todo: now };
  });
}

function markNotStaged(pool: Pool, token: Token, message: string): Promise<boolean> {
  return update(pool, token, (t, now) => {
    t.status = 'error';
    t.reason = 'not staged';
    t.exit_code = EXIT.notStaged;
    // PiCaS counts a token as error when lock and done are set and exit_code is non-zero.
    t.lock = t.lock || now;
    t.done = now;
    t.error = [...t.error, { time: now, message }];
    t.times = { ...t.times, error: now };
  });
}
