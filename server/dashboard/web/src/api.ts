/** The dashboard's JSON routes (server/dashboard/routes.ts); every call is a GET. */
import type { Throughput, TokenDetail, TokenPage } from '../../../status/types.js';
import type { DashboardFilter, DashboardSummary, PilotPanel, PilotRecord } from '../../types.js';

export type { DashboardFilter, DashboardSummary, PilotPanel, PilotRecord, Throughput, TokenDetail, TokenPage };

const root = document.getElementById('app')!;
export const API = root.dataset.api!;
export const DB = root.dataset.db!;

async function get<T>(path: string, params: Record<string, string | number | null | undefined> = {}): Promise<T> {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') qs.set(k, String(v));
  const res = await fetch(`${API}/${path}${qs.size ? `?${qs}` : ''}`, { headers: { accept: 'application/json' } });
  if (!res.ok) {
    const body = (await res.json().catch(() => ({}))) as { reason?: string; hint?: string };
    throw new Error(body.reason ? `${body.reason}${body.hint ? ` ${body.hint}` : ''}` : `HTTP ${res.status}`);
  }
  return (await res.json()) as T;
}

export const fetchSummary = (filter: DashboardFilter, hours: number) => get<DashboardSummary>('summary', { ...filter, hours });
/** One page of tokens in `filter.status`: of one observation × step, or across the pool when neither is given. */
export const fetchTokens = (filter: DashboardFilter, after: string | null) => get<TokenPage>('tokens', { ...filter, after, limit: 25 });
export const fetchToken = (id: string) => get<TokenDetail>(`token/${encodeURIComponent(id)}`);
export const fetchPilots = () => get<PilotPanel>('pilots');

/** Calls onChange whenever the pool changed (server-sent events from the server's changes watcher). */
export function onPoolChange(onChange: () => void, onState: (live: boolean) => void): () => void {
  const events = new EventSource(`${API}/events`);
  events.addEventListener('open', () => onState(true));
  events.addEventListener('error', () => onState(false));
  events.addEventListener('change', () => onChange());
  return () => events.close();
}
