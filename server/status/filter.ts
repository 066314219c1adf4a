/** The --obsid/--step filter as view key ranges over keys that start [obsid, step, …]. */
import { InputError } from '../errors.js';

export interface StatusFilter {
  obsid?: string | null;
  step?: string | null;
}

/** startkey/endkey for views keyed [obsid, step, …]; a step alone is filtered after the query. */
export function keyRange(filter: StatusFilter): { startkey?: unknown[]; endkey?: unknown[] } {
  if (filter.obsid && filter.step) return { startkey: [filter.obsid, filter.step], endkey: [filter.obsid, filter.step, {}] };
  if (filter.obsid) return { startkey: [filter.obsid], endkey: [filter.obsid, {}] };
  return {};
}

/**
 * Whether a view key's [obsid, step] come from a tokenpool token: PiCaS-format tokens (not yet
 * adopted) have no step, and are counted apart rather than shown as a "null null" row. A tokenpool
 * token's obsid is null when it is no LOFAR observation (adopted from PiCaS).
 */
export function isTokenpoolKey(key: readonly unknown[], at = 0): boolean {
  return (typeof key[at] === 'string' || key[at] === null) && typeof key[at + 1] === 'string';
}

/** How status output names a token without observation: adopted non-LOFAR work, or PiCaS-format tokens. */
export const NO_OBSID = '-';

export function obsidLabel(obsid: unknown): string {
  return typeof obsid === 'string' ? obsid : NO_OBSID;
}

export function matches(filter: StatusFilter, obsid: string, step: string): boolean {
  return (!filter.obsid || filter.obsid === obsid) && (!filter.step || filter.step === step);
}

/**
 * Checks filter values as the token schema would, so a typo is reported instead of showing an empty pool.
 * `prefix` is how the message names the setting: "--" for CLI flags, "" for the dashboard's query parameters.
 */
export function checkFilter(filter: StatusFilter, prefix = '--'): StatusFilter {
  if (filter.obsid && !/^L\d+$/.test(filter.obsid)) {
    throw new InputError(`${prefix}obsid ${JSON.stringify(filter.obsid)} is not an observation id`, 'Observation ids look like L229507.');
  }
  if (filter.step && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(filter.step)) {
    throw new InputError(`${prefix}step ${JSON.stringify(filter.step)} is not a step name`, 'Step names use letters, digits, "_", "." or "-".');
  }
  return { obsid: filter.obsid ?? null, step: filter.step ?? null };
}
