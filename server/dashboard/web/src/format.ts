/** Number, time and status presentation shared by the components. */

import { TOKEN_STATUSES } from '../../../statuses.js';

export { formatDuration as duration } from '../../../status/duration.js';

export const STATUS_ORDER: readonly string[] = TOKEN_STATUSES;

export function statusesIn(counts: Partial<Record<string, number>>): string[] {
  const known = STATUS_ORDER.filter((s) => (counts[s] ?? 0) > 0);
  const other = Object.keys(counts).filter((s) => !STATUS_ORDER.includes(s) && (counts[s] ?? 0) > 0);
  return [...known, ...other.sort()];
}

export function clock(unix: number): string {
  return new Date(unix * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export function dateTime(unix: number | null): string {
  if (!unix) return '—';
  const d = new Date(unix * 1000);
  return `${d.toISOString().slice(0, 10)} ${clock(unix)}`;
}

export function num(n: number): string {
  return n.toLocaleString('en-US');
}

export function pct(part: number, total: number): string {
  return total === 0 ? '0%' : `${Math.floor((part / total) * 100)}%`;
}
