/** How long, for people: "3d 04h", "2h 05m", "4m 07s", "12s"; no import, so the dashboard page can use it too. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '—';
  if (seconds <= 0) return 'done';
  const s = Math.round(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${String(h).padStart(2, '0')}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
