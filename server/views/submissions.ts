/** Views over pilot submission records (type "submission", see server/submissions.ts). */
import type { ViewDef } from './types.js';

export const submissionViews: Record<string, ViewDef> = {
  // Every submission by time: `tokenpool pilots` lists them, newest first with descending=true.
  submissions: {
    map: `function (doc) {
  if (doc.type === 'submission') emit(doc.time, null);
}`,
  },
  // Pilots per [state, backend, time] where state is "active" until every pilot of the submission has
  // finished; the sum of "finished" needs no batch-system query, the "active" rows are checked live.
  submission_pilots: {
    map: `function (doc) {
  if (doc.type === 'submission') emit([doc.finished_at ? 'finished' : 'active', doc.backend, doc.time], doc.count);
}`,
    reduce: '_sum',
  },
};
