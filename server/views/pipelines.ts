/**
 * Pipeline views (design doc `tokenpool`): the tokens of each run by step and state, for `pipeline
 * status`, the dashboard and the repair of releases (`pipeline advance`, `tokens scrub`).
 */
import { EFFECTIVE_STATUS_JS } from '../effective-status.js';
import type { ViewDef } from './types.js';

export const pipelineViews: Record<string, ViewDef> = {
  // [run, step, state] → 1, state being the effective status, or "blocked" for a waiting token an
  // upstream failure keeps from running; group_level=3 gives the counts of a run's table.
  pipeline_steps: {
    map: `function (doc) {
  ${EFFECTIVE_STATUS_JS}
  if (doc.type === 'token' && doc.pipeline && doc.pipeline.run) {
    var state = effectiveStatus(doc);
    if (state === 'waiting' && doc.pipeline.blocked_by && doc.pipeline.blocked_by.length) state = 'blocked';
    emit([doc.pipeline.run, doc.pipeline.step, state], 1);
  }
}`,
    reduce: '_count',
  },
};
