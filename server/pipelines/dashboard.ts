/** Active pipeline runs as the dashboard shows them, read through its GET-only PoolReader. */
import type { PoolReader } from '../status/reader.js';
import type { PipelineRunView } from '../dashboard/types.js';
import { activeRunSummaries } from './summary.js';

const SHOWN = 5;

/** The summary `status` and `pipeline status` show (summary.ts), trimmed to what the page draws. */
export async function pipelineRuns(reader: PoolReader): Promise<PipelineRunView[]> {
  const runs = await activeRunSummaries(reader, { limit: SHOWN });
  return runs.map((r) => ({
    run: r.run,
    name: r.name,
    created: r.created,
    observations: r.observations,
    steps: r.steps.map((s) => ({ step: s.step, per: s.per, needs: s.needs, total: s.total, counts: s.counts })),
    failures: r.failures.map((f) => ({ token: f.token, step: f.step, reason: f.reason, blocks: f.blocks, blocksSteps: f.blocks_steps })),
    failed: r.steps.reduce((n, s) => n + s.error, 0),
  }));
}
