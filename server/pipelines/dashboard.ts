/** Active pipeline runs as the dashboard shows them, read through its GET-only PoolReader. */
import { DESIGN, type PoolReader } from '../status/reader.js';
import type { PipelineFailureView, PipelineRunView } from '../dashboard/types.js';
import type { Token } from '../token.js';
import { isRunDoc, RUN_PREFIX, type RunDoc } from './run.js';

const SHOWN = 5;
/** Failed tokens listed per run; the page says how many more there are. */
const FAILURES_SHOWN = 10;

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
  const steps = run.steps.map((s) => {
    const c = counts.get(s.name) ?? {};
    return { step: s.name, per: s.per === 'group' ? `group of ${s.group}` : s.per, needs: s.needs.map((n) => n.step), total: Object.values(c).reduce((a, b) => a + b, 0), counts: c };
  });
  const failed = steps.reduce((n, s) => n + (s.counts.error ?? 0), 0);
  return { run: run.run, name: run.name, created: run.created, observations: run.observations, steps, failed, failures: failed ? await failures(reader, run, steps) : [] };
}

/** The first failed tokens in step order, each with the dependents it keeps from running. */
async function failures(reader: PoolReader, run: RunDoc, steps: PipelineRunView['steps']): Promise<PipelineFailureView[]> {
  const shown: PipelineFailureView[] = [];
  for (const s of steps) {
    if (!s.counts.error || shown.length >= FAILURES_SHOWN) continue;
    const rows = await reader.view<unknown, unknown>(DESIGN, 'pipeline_steps', { key: [run.run, s.step, 'error'], reduce: false, include_docs: true, limit: FAILURES_SHOWN - shown.length });
    for (const row of rows) {
      const t = row.doc as unknown as Token;
      const blocks = t.pipeline?.feeds.length ?? 0;
      // The dependents are the tokens of the steps that need this one (feeds holds their ids).
      const blocksSteps = blocks ? run.steps.filter((d) => d.needs.some((n) => n.step === s.step)).map((d) => d.name) : [];
      shown.push({ token: t._id, step: s.step, reason: t.reason, blocks, blocksSteps });
    }
  }
  return shown;
}
