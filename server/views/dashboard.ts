/** Views the status command and the dashboard need beyond `progress` (design doc `tokenpool`). */
import { EFFECTIVE_STATUS_JS } from '../effective-status.js';
import type { ViewDef } from './types.js';

/** Width of a throughput bucket in seconds: a minute, so a rate is right minutes after work starts. */
export const DONE_BUCKET_S = 60;

export const dashboardViews: Record<string, ViewDef> = {
  // Finished tokens by [bucket start, obsid, step]: a key range from (now − window) with group_level=3
  // gives per-bucket counts for the throughput rate and chart without reading any token.
  done_timeline: {
    map: `function (doc) {
  ${EFFECTIVE_STATUS_JS}
  if (doc.type === 'token' && effectiveStatus(doc) === 'done') {
    // A PiCaS worker records the end in done only.
    var t = (doc.status === 'done' && doc.times && doc.times.done) || doc.done || 0;
    emit([t - (t % ${DONE_BUCKET_S}), doc.obsid, doc.step], 1);
  }
}`,
    reduce: '_count',
  },
};
