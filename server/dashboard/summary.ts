/**
 * The summary the page shows: `statusSummary` (grouped view queries; obsid and step narrow the key
 * range) narrowed to one status when the filter names one, plus the observations and steps for the
 * filter menus. A status filter narrows the counts, not what they are measured against: a row's rate
 * and ETA stay those of its observation × step, and the throughput chart is about finished tokens.
 */
import { ACTIVE_STATUSES } from '../token.js';
import { DESIGN, type PoolReader } from '../status/reader.js';
import { isTokenpoolKey } from '../status/filter.js';
import { statusSummary } from '../status/summary.js';
import type { ProgressRow, StatusSummary } from '../status/types.js';
import type { DashboardFilter, DashboardSummary } from './types.js';
import { pipelineRuns } from '../pipelines/dashboard.js';

export async function dashboardSummary(reader: PoolReader, filter: DashboardFilter, chartSeconds: number): Promise<DashboardSummary> {
  const narrowedByKey = filter.obsid !== null || filter.step !== null;
  const [summary, allSteps, pipelines] = await Promise.all([
    statusSummary(reader, filter, { chartSeconds }),
    narrowedByKey ? stepsInPool(reader) : null,
    pipelineRuns(reader),
  ]);
  const { pilots: _pilots, filter: _filter, ...rest } = summary;
  const narrowed = filter.status ? narrowToStatus(rest, filter.status) : rest;
  const filtered = narrowedByKey || filter.status !== null;
  return {
    ...narrowed,
    filter,
    // PiCaS-format tokens have no observation, step or tokenpool status: no filter selects them.
    picasTokens: filtered ? 0 : summary.picasTokens,
    choices: choicesOf(allSteps ?? summary.rows),
    pipelines,
  };
}

type Counted = Omit<StatusSummary, 'filter' | 'pilots'>;

function narrowToStatus(s: Counted, status: string): Counted {
  const only = (n: number) => ({ counts: { [status]: n }, total: n });
  const rows: ProgressRow[] = s.rows
    .filter((r) => (r.counts[status] ?? 0) > 0)
    .map((r) => {
      const n = r.counts[status]!;
      return {
        ...r,
        ...only(n),
        done: status === 'done' ? n : 0,
        error: status === 'error' ? n : 0,
        active: (ACTIVE_STATUSES as readonly string[]).includes(status) ? n : 0,
      };
    });
  const failing = status === 'error';
  return {
    ...s,
    rows,
    totals: { ...s.totals, ...only(rows.reduce((sum, r) => sum + r.total, 0)) },
    failures: failing ? s.failures : [],
    failuresOmitted: failing ? s.failuresOmitted : 0,
  };
}

/** Every [obsid, step] in the pool: the `progress` view grouped at level 2 (a stored reduction, no token read). */
async function stepsInPool(reader: PoolReader): Promise<{ obsid: string; step: string }[]> {
  const rows = await reader.view<[string, string], number>(DESIGN, 'progress', { group_level: 2 });
  return rows.filter((r) => isTokenpoolKey(r.key)).map((r) => ({ obsid: r.key[0], step: r.key[1] }));
}

function choicesOf(steps: { obsid: string; step: string }[]): DashboardSummary['choices'] {
  const sorted = (xs: string[]) => [...new Set(xs)].sort();
  return { obsids: sorted(steps.map((s) => s.obsid)), steps: sorted(steps.map((s) => s.step)) };
}
