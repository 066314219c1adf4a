/** Active pipeline runs as the dashboard shows them, read through its GET-only PoolReader. */
import { DESIGN, type PoolReader } from '../status/reader.js';
import type { PipelineRunView } from '../dashboard/types.js';
import { isRunDoc, RUN_PREFIX, type RunDoc } from './run.js';

const SHOWN = 5;

export async function pipelineRuns(reader: PoolReader): Promise<PipelineRunView[]> {
  const res = await reader.get<{ rows: { doc?: unknown }[] }>('_all_docs', { startkey: RUN_PREFIX, endkey: `${RUN_PREFIX}\ufff0`, include_docs: true });
  const runs = res.rows
    .map((r) => r.doc)
    .filter(isRunDoc)
    .filter((r) => r.status === 'active')
    .sort((a, b) => b.created - a.created)
    .slice(0, SHOWN);
  return Promise.all(runs.map((r) => view(reader, r)));
}

async function view(reader: PoolReader, run: RunDoc): Promise<PipelineRunView> {
  const rows = await reader.view<[string, string, string], number>(DESIGN, 'pipeline_steps', { startkey: [run.run], endkey: [run.run, {}], group_level: 3 });
  const counts = new Map<string, Record<string, number>>();
  for (const row of rows) {
    const [, step, state] = row.key;
    const c = counts.get(step) ?? {};
    c[state] = (c[state] ?? 0) + row.value;
    counts.set(step, c);
  }
  return {
    run: run.run,
    name: run.name,
    created: run.created,
    observations: run.observations,
    steps: run.steps.map((s) => {
      const c = counts.get(s.name) ?? {};
      return { step: s.name, per: s.per === 'group' ? `group of ${s.group}` : s.per, needs: s.needs.map((n) => n.step), total: Object.values(c).reduce((a, b) => a + b, 0), counts: c };
    }),
  };
}
