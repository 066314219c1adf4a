/**
 * What the page shows lives in its URL query (?obsid=&step=&status=&token=&hours=): a link shows
 * the same view to a colleague, and every change is a history entry, so the back button undoes it.
 */
import { useEffect, useState } from 'preact/hooks';

export interface PageState {
  obsid: string | null;
  step: string | null;
  status: string | null;
  /** the token whose detail is open */
  token: string | null;
  /** how far back the throughput chart reaches */
  hours: number;
}

const DEFAULT_HOURS = 1;

function readState(): PageState {
  const q = new URLSearchParams(location.search);
  const hours = Number(q.get('hours'));
  return {
    obsid: q.get('obsid') || null,
    step: q.get('step') || null,
    status: q.get('status') || null,
    token: q.get('token') || null,
    hours: Number.isInteger(hours) && hours > 0 ? hours : DEFAULT_HOURS,
  };
}

function queryOf(s: PageState): string {
  const q = new URLSearchParams();
  for (const k of ['obsid', 'step', 'status', 'token'] as const) if (s[k]) q.set(k, s[k]!);
  if (s.hours !== DEFAULT_HOURS) q.set('hours', String(s.hours));
  return q.size ? `?${q}` : '';
}

/** The page state and a setter that records each change in the browser's history. */
export function useUrlState(): [PageState, (change: Partial<PageState>) => void] {
  const [state, setState] = useState(readState);
  useEffect(() => {
    const onPop = () => setState(readState());
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const update = (change: Partial<PageState>) => {
    const next = { ...readState(), ...change };
    history.pushState(null, '', `${location.pathname}${queryOf(next)}`);
    setState(next);
  };
  return [state, update];
}
