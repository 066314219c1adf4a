/**
 * The macaroons file: what `tokenpool stage --method stageit` receives from StageIT, per LTA site
 * and request, for the agents to read with. JSON, mode 0600, in a 0700 directory:
 * `{"macaroons": [{"site": "SURF", "hosts": ["webdav.grid.surfsara.nl"], "content": "…",
 * "validUntil": "2026-12-10T12:00:00Z", "request_id": 4242}]}`. Written whole to a temporary file
 * and renamed, so a reader never sees half of it; read afresh before every transfer.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError } from '../../../server/errors.js';
import { registerSecret } from '../../../server/redact.js';

export interface MacaroonEntry {
  /** StageIT's LTA site name: SURF, Juelich, Poznan */
  site: string;
  /** host[:port] of the WebDAV URLs it is for */
  hosts: string[];
  content: string;
  /** ISO time */
  validUntil?: string;
  request_id?: number;
}

/** Host names of the LTA sites, for a macaroon whose request listed no WebDAV URL of a host. */
const SITE_DOMAINS: Record<string, string[]> = {
  surf: ['grid.sara.nl', 'surfsara.nl', 'surf.nl'],
  juelich: ['fz-juelich.de'],
  poznan: ['man.poznan.pl', 'psnc.pl'],
  psnc: ['man.poznan.pl', 'psnc.pl'],
};

export function defaultMacaroonsFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.HOME || os.homedir(), '.tokenpool', 'macaroons.json');
}

/** The entries of the file; none when it does not exist. A file open to others is refused. */
export function readMacaroons(file: string): MacaroonEntry[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    return [];
  }
  if ((stat.mode & 0o077) !== 0) throw new InputError(`macaroons file ${file} is readable by others`, `Run: chmod 600 ${file}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InputError(`macaroons file ${file} is not JSON: ${(err as Error).message}`);
  }
  const list = (parsed as { macaroons?: unknown })?.macaroons;
  if (!Array.isArray(list)) throw new InputError(`macaroons file ${file} has no "macaroons" list`);
  const entries = list.filter((e): e is MacaroonEntry => typeof e?.content === 'string' && typeof e?.site === 'string').map((e) => ({ ...e, hosts: Array.isArray(e.hosts) ? e.hosts : [] }));
  for (const e of entries) registerSecret(e.content);
  return entries;
}

/** The longest-lived entry for the URL's host (listed, or by the site's domains); null when none. */
export function macaroonForUrl(entries: MacaroonEntry[], url: URL): MacaroonEntry | null {
  const host = url.host.toLowerCase();
  const name = url.hostname.toLowerCase();
  const fits = (e: MacaroonEntry) =>
    e.hosts.some((h) => h.toLowerCase() === host || h.toLowerCase() === name) || (SITE_DOMAINS[e.site.toLowerCase()] ?? []).some((d) => name === d || name.endsWith(`.${d}`));
  const until = (e: MacaroonEntry) => (e.validUntil ? Date.parse(e.validUntil) : Number.POSITIVE_INFINITY);
  return entries.filter(fits).sort((a, b) => until(b) - until(a))[0] ?? null;
}

/** Adds or replaces (same site and request) entries, dropping expired ones; 0600, atomically. */
export function saveMacaroons(file: string, added: MacaroonEntry[], now = Date.now()): void {
  const kept = readMacaroons(file).filter((e) => !added.some((a) => a.site === e.site && a.request_id === e.request_id) && (!e.validUntil || Date.parse(e.validUntil) > now));
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify({ macaroons: [...kept, ...added] }, null, 1) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}
