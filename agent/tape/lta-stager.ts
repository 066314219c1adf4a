/**
 * Client of the LOFAR LTA stager service (XML-RPC): request files online, follow the request.
 * Credentials come from TOKENPOOL_LTA_USER / TOKENPOOL_LTA_PASSWORD or a 0600 file, travel in an
 * Authorization header (never in the URL) and are registered for redaction.
 */
import fs from 'node:fs';
import { InputError } from '../../server/errors.js';
import { redactUrl, registerSecret } from '../../server/redact.js';
import { xmlRpcCall, type XmlRpcValue } from './xmlrpc.js';

export interface LtaCredentials {
  user: string;
  password: string;
}

export interface LtaProgress {
  status: string;
  fileCount: number;
  filesDone: number | null;
  percentDone: number;
}

/** Request states the stager reports that will not change any more. */
export const LTA_FINISHED = ['success', 'partial success', 'failed', 'aborted'];

export class LtaStager {
  private readonly authorization: string;

  constructor(
    readonly url: string,
    credentials: LtaCredentials,
  ) {
    this.authorization = 'Basic ' + Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64');
  }

  /** Requests the SURLs online; returns the stager's request id. */
  async request(surls: string[]): Promise<number> {
    const id = await this.call('LtaStager.add_getid', [surls]);
    if (typeof id !== 'number') throw new Error(`LTA stager: add_getid answered ${JSON.stringify(id)}, not a request id`);
    return id;
  }

  /** "new", "scheduled", "in progress", "success", … (lower-cased) */
  async status(id: number): Promise<string> {
    return String(await this.call('LtaStager.getstatus', [id])).toLowerCase();
  }

  /** The SURLs of the request that are online now. */
  async stagedUrls(id: number): Promise<string[]> {
    const urls = await this.call('LtaStager.getstagedurls', [id]);
    return Array.isArray(urls) ? urls.map(String) : [];
  }

  /** Progress of the user's running requests, by request id. */
  async progress(): Promise<Map<number, LtaProgress>> {
    const all = await this.call('LtaStager.getprogress', []);
    const out = new Map<number, LtaProgress>();
    if (!all || typeof all !== 'object' || Array.isArray(all)) return out;
    for (const [id, entry] of Object.entries(all)) {
      if (!entry || typeof entry !== 'object' || Array.isArray(entry)) continue;
      const e = entry as Record<string, XmlRpcValue>;
      out.set(Number(id), {
        status: String(e['Status'] ?? '').toLowerCase(),
        fileCount: Number(e['File count'] ?? 0),
        filesDone: e['Files done'] === undefined ? null : Number(e['Files done']),
        percentDone: Number(String(e['Percent done'] ?? 0).replace('%', '')),
      });
    }
    return out;
  }

  private async call(method: string, params: XmlRpcValue[]): Promise<XmlRpcValue> {
    try {
      return await xmlRpcCall(this.url, method, params, { authorization: this.authorization, signal: AbortSignal.timeout(120_000) });
    } catch (err) {
      throw new Error(`LTA stager ${redactUrl(this.url)}: ${(err as Error).message}`);
    }
  }
}

/**
 * The stager account: a file (JSON {"user","password"}, or the stager's own `.stagingrc` form
 * `user=…` / `password=…`) that only its owner can read, else the environment.
 */
export function ltaCredentials(file: string | undefined, env: NodeJS.ProcessEnv = process.env): LtaCredentials {
  let creds: Partial<LtaCredentials>;
  if (file) {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch {
      throw new InputError(`LTA credentials file not found: ${file}`);
    }
    if ((stat.mode & 0o077) !== 0) throw new InputError(`LTA credentials file ${file} is readable by others`, `Run: chmod 600 ${file}`);
    creds = parseCredentials(fs.readFileSync(file, 'utf8'));
  } else {
    creds = { user: env.TOKENPOOL_LTA_USER, password: env.TOKENPOOL_LTA_PASSWORD };
  }
  if (!creds.user || !creds.password) {
    throw new InputError(
      file ? `LTA credentials file ${file} must give a user and a password` : 'no LTA stager credentials',
      'Set TOKENPOOL_LTA_USER and TOKENPOOL_LTA_PASSWORD, or pass --lta-credentials FILE (0600; JSON {"user","password"} or user=/password= lines).',
    );
  }
  registerSecret(creds.password);
  return { user: creds.user, password: creds.password };
}

function parseCredentials(text: string): Partial<LtaCredentials> {
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    return { user: String(j.user ?? j.name ?? ''), password: String(j.password ?? '') };
  } catch {
    const get = (key: string) => new RegExp(`^\\s*${key}\\s*[=:]\\s*(.*?)\\s*$`, 'm').exec(text)?.[1];
    return { user: get('user'), password: get('password') };
  }
}
