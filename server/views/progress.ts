/**
 * Progress and failure views (design doc `tokenpool`): what status, failures, the dashboard and `tokens`
 * read. They key on a token's effective status (effective-status.ts), so that work a stock PiCaS worker
 * did (lock/done/exit_code, no `status`) is counted where it belongs.
 */
import { EFFECTIVE_STATUS_JS } from '../effective-status.js';
import type { ViewDef } from './types.js';

export const progressViews: Record<string, ViewDef> = {
  // [obsid, step, status] → 1; group_level=3 gives counts per observation × step × status.
  // PiCaS-format tokens (not adopted) have neither obsid nor step: [null, null, state].
  progress: {
    map: `function (doc) {
  ${EFFECTIVE_STATUS_JS}
  if (doc.type === 'token') emit([doc.obsid === undefined ? null : doc.obsid, doc.step === undefined ? null : doc.step, effectiveStatus(doc)], 1);
}`,
    reduce: '_count',
  },
  // Failed tokens by [obsid, step, reason, exit_code]; reduce=false lists example ids per group.
  failures: {
    map: `function (doc) {
  ${EFFECTIVE_STATUS_JS}
  if (doc.type === 'token' && effectiveStatus(doc) === 'error') {
    emit([doc.obsid === undefined ? null : doc.obsid, doc.step === undefined ? null : doc.step, failureReason(doc), exitCodeOf(doc.exit_code)], 1);
  }
}`,
    reduce: '_count',
  },
  // [status, last change] → null: "every token in error", "locked and untouched for 2 h" as one key range
  // (reduce=false&limit=N stays fast where a grouped reduce would not).
  by_status: {
    map: `function (doc) {
  ${EFFECTIVE_STATUS_JS}
  if (doc.type === 'token') emit([effectiveStatus(doc), lastChange(doc)], null);
}`,
  },
};
