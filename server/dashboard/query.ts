/**
 * The query parameters of the dashboard's JSON routes, checked before anything is read: an unknown
 * parameter, a malformed observation id, step or status, or a number out of range is a 400 naming
 * the parameter and what it accepts, never an empty answer that looks like an empty pool.
 */
import { InputError } from '../errors.js';
import { TOKEN_STATUSES } from '../statuses.js';
import { checkFilter } from '../status/filter.js';
import type { DashboardFilter } from './types.js';

export const FILTER_PARAMS = ['obsid', 'step', 'status'] as const;

/** Rejects parameters the route does not know (a typo such as `obsids=` would silently show everything). */
export function onlyParams(q: URLSearchParams, route: string, allowed: readonly string[]): void {
  for (const name of new Set(q.keys())) {
    if (!allowed.includes(name)) {
      throw new InputError(`${route} has no query parameter ${JSON.stringify(name)}`, `It takes ${allowed.join(', ')}.`);
    }
    if (q.getAll(name).length > 1) throw new InputError(`query parameter ${name} is given more than once`);
  }
}

/** obsid, step and status; an empty value means "all", as the page's links leave it. */
export function filterOf(q: URLSearchParams): DashboardFilter {
  const value = (name: (typeof FILTER_PARAMS)[number]) => q.get(name) || null;
  const { obsid, step } = checkFilter({ obsid: value('obsid'), step: value('step') }, '');
  const status = value('status');
  if (status !== null && !(TOKEN_STATUSES as readonly string[]).includes(status)) {
    throw new InputError(`status ${JSON.stringify(status)} is not a token status`, `Token statuses: ${TOKEN_STATUSES.join(', ')}.`);
  }
  return { obsid: obsid ?? null, step: step ?? null, status };
}

export function numberParam(q: URLSearchParams, name: string, dflt: number, min: number, max: number, whole: boolean): number {
  if (!q.get(name)) return dflt;
  const n = Number(q.get(name));
  if (!(n >= min && n <= max) || (whole && !Number.isInteger(n))) {
    throw new InputError(`${name} must be a ${whole ? 'whole ' : ''}number from ${min} to ${max}, not ${JSON.stringify(q.get(name))}`);
  }
  return n;
}
