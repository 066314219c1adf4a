/**
 * LTA SURL lists: one URL per line, as the LOFAR Long Term Archive hands them out, e.g.
 *   srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_038/229507/L229507_SB100_uv.dppp.MS_3d78b8f1.tar
 * The file name carries the observation and subband; the SRM door names the archive site.
 * file://, http:// and https:// URLs with the same file-name convention are accepted too (site null),
 * so that a demo or a test can serve inputs locally.
 */
import type { LtaSite } from './token.js';

export interface Surl {
  url: string;
  /** 1-based line in the list */
  line: number;
  obsid: string;
  subband: number;
  site: LtaSite | null;
  /** LTA project (lc2_038) when the path names one */
  project: string | null;
}

export interface SurlProblem {
  line: number;
  message: string;
}

export interface ParsedSurlList {
  surls: Surl[];
  problems: SurlProblem[];
  /** exact repeats of an earlier line, dropped */
  duplicates: number;
}

/** SRM doors of the three LTA sites; a subdomain of these belongs to the same site. */
const SITE_DOMAINS: readonly [string, LtaSite][] = [
  ['grid.sara.nl', 'sara'],
  ['surfsara.nl', 'sara'],
  ['fz-juelich.de', 'juelich'],
  ['lofar.psnc.pl', 'poznan'],
  ['psnc.pl', 'poznan'],
];

const FILE_NAME = /^(L\d+)_SB(\d{1,4})_[^/]*$/;
const PROJECT = /\/projects\/([A-Za-z0-9_]+)\//;

export function siteOfHost(host: string): LtaSite | null {
  const h = host.toLowerCase();
  for (const [domain, site] of SITE_DOMAINS) {
    if (h === domain || h.endsWith('.' + domain)) return site;
  }
  return null;
}

/** Parses one URL; a string is the reason it is not a usable LTA (or local) input. */
export function parseSurl(text: string, line: number): Surl | string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return `not a URL: ${text}`;
  }
  let site: LtaSite | null = null;
  if (u.protocol === 'srm:') {
    site = siteOfHost(u.hostname);
    if (!site) return `unknown LTA site host ${u.hostname} (known: srm.grid.sara.nl, lofar-srm.fz-juelich.de, lta-head.lofar.psnc.pl)`;
  } else if (!['file:', 'http:', 'https:'].includes(u.protocol)) {
    return `unsupported scheme ${u.protocol.replace(/:$/, '')}:// (use srm://, https://, http:// or file://)`;
  }
  if (u.username || u.password) return 'URL must not carry credentials';
  const name = decodeURIComponent(u.pathname.split('/').pop() ?? '');
  const m = FILE_NAME.exec(name);
  if (!m) return `file name ${name || '(none)'} does not look like L<obsid>_SB<nnn>_… (e.g. L229507_SB100_uv.MS_3d78b8f1.tar)`;
  return {
    url: text,
    line,
    obsid: m[1]!,
    subband: Number(m[2]),
    site,
    project: PROJECT.exec(u.pathname)?.[1] ?? null,
  };
}

/** Parses a list: blank lines and # comments skipped, exact duplicates dropped, every problem kept with its line. */
export function parseSurlList(text: string): ParsedSurlList {
  const surls: Surl[] = [];
  const problems: SurlProblem[] = [];
  const seenUrl = new Set<string>();
  const seenSubband = new Map<string, number>();
  let duplicates = 0;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    if (seenUrl.has(trimmed)) {
      duplicates++;
      return;
    }
    seenUrl.add(trimmed);
    const parsed = parseSurl(trimmed, line);
    if (typeof parsed === 'string') {
      problems.push({ line, message: parsed });
      return;
    }
    const key = `${parsed.obsid}/${parsed.subband}`;
    const earlier = seenSubband.get(key);
    if (earlier !== undefined) {
      problems.push({ line, message: `subband ${parsed.subband} of ${parsed.obsid} is already on line ${earlier} with another URL` });
      return;
    }
    seenSubband.set(key, line);
    surls.push(parsed);
  });
  return { surls, problems, duplicates };
}

/**
 * One observation from one site per list (as the LTA stages them); a second one is usually a
 * mistake (a wrong file appended), so it is refused unless mixing is asked for.
 */
export function mixingProblems(surls: readonly Surl[]): SurlProblem[] {
  const first = surls[0];
  if (!first) return [];
  const problems: SurlProblem[] = [];
  const obs = surls.find((s) => s.obsid !== first.obsid);
  if (obs) {
    problems.push({ line: obs.line, message: `observation ${obs.obsid} differs from ${first.obsid} (line ${first.line}); pass --allow-mixed to accept several observations` });
  }
  const site = surls.find((s) => s.site !== first.site);
  if (site) {
    problems.push({ line: site.line, message: `site ${site.site ?? 'local'} differs from ${first.site ?? 'local'} (line ${first.line}); pass --allow-mixed to accept several sites` });
  }
  return problems;
}

/**
 * Groups subbands into tokens of `size` consecutive subbands, aligned to multiples of `size`
 * (SB100–109, SB110–119, …) so that a token's id does not depend on which other subbands the list holds.
 */
export function groupSurls(surls: readonly Surl[], size: number): Surl[][] {
  const groups = new Map<string, Surl[]>();
  for (const s of [...surls].sort((a, b) => a.obsid.localeCompare(b.obsid) || a.subband - b.subband)) {
    const key = `${s.obsid}/${s.site}/${Math.floor(s.subband / size)}`;
    const group = groups.get(key);
    if (group) group.push(s);
    else groups.set(key, [s]);
  }
  return [...groups.values()];
}
