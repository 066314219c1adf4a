/**
 * Client of ASTRON's StageIT, the LTA's staging service: REST under
 * `https://sdc.astron.nl/stageit/api/staging/` (`POST requests/` with the SURLs, `GET
 * requests/<id>/convert2webdav/` for the WebDAV URLs of its files) and GraphQL (`graphql/`) for a
 * request's status, per-file response (online, progressing, errors with the reason) and per-site
 * macaroons (content, validUntil, LTA site). Authorised with `Authorization: Token <api_token>`; the
 * token comes from TOKENPOOL_STAGEIT_TOKEN, a 0600 file, or `~/.stagingrc` (`api_token=…`, and
 * `hostname=…` for another StageIT), is registered for redaction and never printed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError, TokenpoolError } from '../../server/errors.js';
import { redactText, registerSecret } from '../../server/redact.js';

export const STAGEIT_URL = 'https://sdc.astron.nl/stageit/api/staging/';

/** Request states StageIT reports that will not change any more. */
export const STAGEIT_FINISHED = ['success', 'partial success', 'failed', 'aborted', 'cancelled'];

export interface StageItAccount {
  token: string;
  /** Base URL of the API, ending in / */
  url: string;
  /** Where the token came from (safe to print) */
  source: string;
}

export interface StageItRequest {
  id: number;
  status: string;
  online: string[];
  /** SURL → StageIT's reason */
  errors: Map<string, string>;
  macaroons: Array<{ site: string; content: string; validUntil?: string }>;
}

export class StageItError extends TokenpoolError {}

export class StageIt {
  constructor(private readonly account: StageItAccount) {
    registerSecret(account.token);
  }

  /** Submits a staging request; returns its id. */
  async request(surls: string[]): Promise<number> {
    const answer = (await this.call('POST', 'requests/', { surls, notify: false, request_type: 'stage' })) as { id?: unknown };
    if (typeof answer?.id !== 'number') throw new StageItError(`StageIT: a new request was answered without an id (${redactText(JSON.stringify(answer)).slice(0, 200)})`);
    return answer.id;
  }

  /** Status, per-file response and macaroons of a request. */
  async status(id: number): Promise<StageItRequest> {
    const data = (await this.graphql(`{ request(id: ${Math.trunc(id)}) { id currentStatus response macaroons { content validUntil ltaSite { name } } } }`)) as {
      request?: { currentStatus?: string; response?: string | null; macaroons?: Array<{ content?: string; validUntil?: string; ltaSite?: { name?: string } }> | null } | null;
    };
    const r = data.request;
    if (!r) throw new StageItError(`StageIT has no request ${id}`, 'It may have been removed; reset the tokens (tokenpool tokens reset) to request their files again.');
    let response: { online?: unknown; errors?: unknown } = {};
    try {
      response = r.response ? (JSON.parse(r.response) as typeof response) : {};
    } catch {
      // A request not yet answered by the LTA has no JSON response: nothing online, no errors.
    }
    const macaroons = (r.macaroons ?? []).filter((m) => typeof m.content === 'string' && m.content).map((m) => ({ site: m.ltaSite?.name ?? 'unknown', content: m.content!, ...(m.validUntil ? { validUntil: m.validUntil } : {}) }));
    for (const m of macaroons) registerSecret(m.content);
    const errors = new Map<string, string>();
    if (response.errors && typeof response.errors === 'object') for (const [surl, why] of Object.entries(response.errors)) errors.set(surl, String(why));
    return { id, status: String(r.currentStatus ?? 'unknown').toLowerCase(), online: Array.isArray(response.online) ? response.online.map(String) : [], errors, macaroons };
  }

  /** The WebDAV URLs of a request's files. */
  async webdavUrls(id: number): Promise<string[]> {
    const urls = await this.call('GET', `requests/${Math.trunc(id)}/convert2webdav/`);
    if (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string')) throw new StageItError(`StageIT: convert2webdav of request ${id} is not a list of URLs`);
    return urls as string[];
  }

  /** Our requests since `since` that ask for exactly these SURLs (to resume without asking twice). */
  async findRequest(surls: string[], since: Date): Promise<number | null> {
    const data = (await this.graphql(`{ requests(when_Gte: ${JSON.stringify(since.toISOString())}) { edges { node { id surls { surl } } } } }`)) as {
      requests?: { edges?: Array<{ node?: { id?: unknown; surls?: Array<{ surl?: string }> } }> };
    };
    const wanted = [...surls].sort().join('\n');
    for (const edge of data.requests?.edges ?? []) {
      const node = edge.node;
      const got = (node?.surls ?? []).map((s) => String(s.surl)).sort().join('\n');
      if (got === wanted && node?.id !== undefined) return Number(node.id);
    }
    return null;
  }

  private async graphql(query: string): Promise<unknown> {
    const answer = (await this.call('POST', 'graphql/', { query })) as { data?: unknown; errors?: Array<{ message?: string }> };
    if (answer?.errors?.length) throw new StageItError(`StageIT: ${redactText(answer.errors.map((e) => e.message ?? 'error').join('; '))}`);
    return answer?.data ?? {};
  }

  private async call(method: 'GET' | 'POST', endpoint: string, body?: unknown): Promise<unknown> {
    const url = new URL(endpoint, this.account.url);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: { Authorization: `Token ${this.account.token}`, Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(120_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new StageItError(`StageIT ${url.origin}: ${cause}`, 'Check the network and the StageIT address (hostname= in ~/.stagingrc, or --stageit-url).');
    }
    const text = await res.text();
    if (res.status === 401 || res.status === 403) {
      throw new StageItError(`StageIT refused the API token from ${this.account.source} (HTTP ${res.status})`, 'Get a new token from StageIT (sdc.astron.nl/stageit) and put it in ~/.stagingrc as api_token=… (mode 0600).');
    }
    // StageIT answers 202 with an empty body to some calls.
    if (res.status === 202 && !text) return null;
    if (res.status < 200 || res.status >= 300) throw new StageItError(`StageIT ${method} ${endpoint}: HTTP ${res.status}: ${redactText(text).slice(0, 300)}`);
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new StageItError(`StageIT ${method} ${endpoint}: the answer is not JSON`);
    }
  }
}

/**
 * The API token: TOKENPOOL_STAGEIT_TOKEN, else `file` (0600: `api_token=…` lines as in .stagingrc,
 * or the bare token), else ~/.stagingrc. Null when none is configured (another method applies).
 */
export function stageItAccount(file: string | undefined, urlFlag: string | undefined, env: NodeJS.ProcessEnv = process.env): StageItAccount | null {
  const base = (host: string | undefined) => urlFlag ?? (host ? `https://${host}/stageit/api/staging/` : STAGEIT_URL);
  if (env.TOKENPOOL_STAGEIT_TOKEN) return { token: env.TOKENPOOL_STAGEIT_TOKEN.trim(), url: withSlash(base(undefined)), source: 'TOKENPOOL_STAGEIT_TOKEN' };
  const rc = file ?? path.join(env.HOME || os.homedir(), '.stagingrc');
  if (!fs.existsSync(rc)) {
    if (file) throw new InputError(`StageIT token file not found: ${file}`);
    return null;
  }
  if ((fs.statSync(rc).mode & 0o077) !== 0) throw new InputError(`${rc} holds the StageIT API token and is readable by others`, `Run: chmod 600 ${rc}`);
  const text = fs.readFileSync(rc, 'utf8');
  const get = (key: string) => new RegExp(`^\\s*${key}\\s*[=:]\\s*(.*?)\\s*$`, 'm').exec(text)?.[1];
  const token = get('api_token') ?? (file && !/[=\s]/.test(text.trim()) ? text.trim() : undefined);
  if (!token) {
    if (!file && (get('user') || get('password'))) return null;
    throw new InputError(`${rc} has no api_token`, 'StageIT takes an API token, not the old stager user and password: put api_token=<token> in the file.');
  }
  return { token, url: withSlash(base(get('hostname'))), source: rc };
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}
