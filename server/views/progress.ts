/** Progress and failure views (design doc `tokenpool`): what status, failures, the dashboard and `tokens` read. */
import type { ViewDef } from './types.js';

export const progressViews: Record<string, ViewDef> = {
  // [obsid, step, status] → 1; group_level=3 gives counts per observation × step × status.
  progress: {
    map: `function (doc) {
  if (doc.type === 'token') emit([doc.obsid, doc.step, doc.status], 1);
}`,
    reduce: '_count',
  },
  // Failed tokens by [obsid, step, reason, exit_code]; reduce=false lists example ids per group.
  failures: {
    map: `function (doc) {
  if (doc.type === 'token' && doc.status === 'error') {
    emit([doc.obsid, doc.step, doc.reason || 'unknown', doc.exit_code === undefined ? null : doc.exit_code], 1);
  }
}`,
    reduce: '_count',
  },
  // [status, updated] → null: "every token in error", "locked and untouched for 2 h" as one key range
  // (reduce=false&limit=N stays fast where a grouped reduce would not).
  by_status: {
    map: `function (doc) {
  if (doc.type === 'token') emit([doc.status, doc.updated || 0], null);
}`,
  },
};
