/** Number, time and status presentation shared by the components. */

export const STATUS_ORDER = ['waiting', 'staging', 'todo', 'locked', 'downloading', 'running', 'uploading', 'done', 'error'];

export function statusesIn(counts: Partial<Record<string, number>>): string[] {
  const known = STATUS_ORDER.filter((s) => (counts[s] ?? 0) > 0);
  const other = Object.keys(counts).filter((s) => !STATUS_ORDER.includes(s) && (counts[s] ?? 0) > 0);
  return [...known, ...other.sort()];
}

export function duration(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds <= 0) return 'done';
  const s = Math.round(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
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
