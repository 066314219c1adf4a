/** The status summary as text for a terminal: a table per observation × step, then failures and pilots. */
import { TOKEN_STATUSES } from '../token.js';
import type { StatusSummary } from './types.js';
import { formatDuration } from './duration.js';

const BAR_WIDTH = 20;

export function progressBar(done: number, error: number, total: number, width = BAR_WIDTH): string {
  if (total === 0) return '░'.repeat(width);
  const d = Math.round((done / total) * width);
  const e = Math.min(width - d, error > 0 ? Math.max(1, Math.round((error / total) * width)) : 0);
  return '█'.repeat(d) + '▒'.repeat(e) + '░'.repeat(width - d - e);
}

function percent(done: number, total: number): string {
  return total === 0 ? '0%' : `${Math.floor((done / total) * 100)}%`;
}

/** Statuses that occur anywhere in the summary, in lifecycle order. */
function statusColumns(s: StatusSummary): string[] {
  const present = new Set(Object.keys(s.totals.counts).filter((k) => (s.totals.counts[k] ?? 0) > 0));
  const known = TOKEN_STATUSES.filter((k) => present.has(k));
  return [...known, ...[...present].filter((k) => !(TOKEN_STATUSES as readonly string[]).includes(k)).sort()];
}

export function renderStatus(s: StatusSummary, table: (rows: (string | number)[][]) => string): string {
  const out: string[] = [];
  const filter = [s.filter.obsid && `obsid ${s.filter.obsid}`, s.filter.step && `step ${s.filter.step}`].filter(Boolean).join(', ');
  out.push(`Pool ${s.db}${filter ? ` (${filter})` : ''} at ${new Date(s.time * 1000).toISOString().replace('T', ' ').slice(0, 19)} UTC`);
  const picasStates = Object.entries(s.picasCounts).filter(([, n]) => (n ?? 0) > 0).map(([state, n]) => `${n} ${state}`).join(', ');
  const picas = s.picasTokens
    ? `${s.picasTokens} PiCaS-format token${s.picasTokens > 1 ? 's' : ''} not adopted (not counted here): ${picasStates}; tokenpool tokens adopt makes them tokenpool tokens`
    : null;
  if (s.rows.length === 0) {
    out.push('', picas ?? 'No tokens' + (filter ? ' match the filter.' : ' yet: add some with `tokenpool tokens add`.'));
    return out.join('\n');
  }
  const cols = statusColumns(s);
  const header: (string | number)[] = ['OBSID', 'STEP', 'PROGRESS', '', 'DONE/TOTAL', ...cols.map((c) => c.toUpperCase()), 'PER HOUR', 'ETA'];
  const rows: (string | number)[][] = [header];
  for (const r of s.rows) {
    rows.push([r.obsid, r.step, progressBar(r.done, r.error, r.total), percent(r.done, r.total), `${r.done}/${r.total}`, ...cols.map((c) => r.counts[c] ?? 0), r.perHour, formatDuration(r.etaSeconds)]);
  }
  if (s.rows.length > 1) {
    const t = s.totals;
    const done = t.counts.done ?? 0;
    rows.push(['all', '', progressBar(done, t.counts.error ?? 0, t.total), percent(done, t.total), `${done}/${t.total}`, ...cols.map((c) => t.counts[c] ?? 0), t.perHour, formatDuration(t.etaSeconds)]);
  }
  out.push('', table(rows));
  if (picas) out.push('', picas);
  if (s.pilots.available) {
    const entries = Object.entries(s.pilots.counts);
    out.push('', `Pilots: ${entries.length ? entries.map(([k, n]) => `${n} ${k}`).join(', ') : 'none submitted'}`);
  }
  if (s.failures.length > 0) {
    out.push('', 'Failures:');
    const f: (string | number)[][] = [['COUNT', 'OBSID', 'STEP', 'EXIT', 'REASON', 'EXAMPLES']];
    for (const g of s.failures) f.push([g.count, g.obsid, g.step, g.exitCode ?? '—', g.reason, g.examples.join(' ') || '…']);
    out.push(table(f));
    if (s.failuresOmitted > 0) out.push(`… and ${s.failuresOmitted} smaller groups.`);
    out.push('Logs and reset commands: tokenpool failures' + (s.filter.obsid ? ` --obsid ${s.filter.obsid}` : '') + (s.filter.step ? ` --step ${s.filter.step}` : ''));
  }
  return out.join('\n');
}
