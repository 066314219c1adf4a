/** Views the agent needs to find claimable work and expired leases (design doc `tokenpool`). */
import type { ViewDef } from './types.js';

export const agentViews: Record<string, ViewDef> = {
  // Claimable tokens, highest priority first; the agent reads a window of rows and picks among them.
  claimable: {
    map: `function (doc) {
  if (doc.type === 'token' && doc.status === 'todo' && doc.lock === 0 && doc.done === 0) {
    emit([-(doc.priority || 0), doc.created || 0], null);
  }
}`,
  },
};
