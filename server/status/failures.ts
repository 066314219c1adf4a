/**
 * Failed tokens grouped by [obsid, step, reason, exit code] from the `failures` view, each group
 * with a few example ids (a key-range query with reduce=false&limit, never a scan of the tokens).
 */
import { DESIGN, type PoolReader } from './reader.js';
import { keyRange, matches, NO_OBSID, obsidLabel, type StatusFilter } from './filter.js';
import type { FailureGroup } from './types.js';

/** obsid null: no LOFAR observation; step null too: a PiCaS-format token (not adopted) */
type FailureKey = [string | null, string | null, string, number | null];

export interface FailureGroups {
  groups: FailureGroup[];
  omitted: number;
}

/**
 * Groups largest first. Example ids cost one engine query per group (~25 ms each on the embedded
 * engine, which answers them one at a time), so only the first `exampleGroups` groups get them.
 */
export async function failureGroups(
  reader: PoolReader,
  filter: StatusFilter,
  opts: { maxGroups?: number; examples?: number; exampleGroups?: number } = {},
): Promise<FailureGroups> {
  const rows = await reader.view<FailureKey, number>(DESIGN, 'failures', { group_level: 4, ...keyRange(filter) });
  const all = rows
    .filter((r) => (r.key[1] === null ? !filter.obsid && !filter.step : matches(filter, obsidLabel(r.key[0]), r.key[1])))
    .map((r) => ({ key: r.key, count: r.value }))
    .sort((a, b) => b.count - a.count);
  const kept = all.slice(0, opts.maxGroups ?? 20);
  const groups = await Promise.all(
    kept.map(async ({ key, count }, i) => {
      const examples = i < (opts.exampleGroups ?? kept.length) ? await reader.view<FailureKey, number>(DESIGN, 'failures', { reduce: false, key, limit: opts.examples ?? 3 }) : [];
      return {
        obsid: obsidLabel(key[0]),
        step: key[1] ?? NO_OBSID,
        picas: key[1] === null,
        reason: key[2],
        exitCode: key[3],
        count,
        examples: examples.map((e) => e.id ?? '').filter(Boolean),
      };
    }),
  );
  return { groups, omitted: all.length - kept.length };
}
