/**
 * Views the agent needs to find claimable work and expired leases (design doc `tokenpool`).
 * Keys end in [-priority, created] so that a key-range read returns the most urgent work first; the
 * agent reads a window of rows (include_docs) and picks among them, re-checking each document.
 */
import type { ViewDef } from './types.js';

// `max_attempts` keeps out PiCaS-format tokens (GRID_LRT's own status "todo"): `tokens adopt` makes them ours first.
const IS_CLAIMABLE = "doc.type === 'token' && doc.max_attempts !== undefined && doc.status === 'todo' && doc.lock === 0 && doc.done === 0";

export const agentViews: Record<string, ViewDef> = {
  // All claimable tokens.
  claimable: {
    map: `function (doc) {
  if (${IS_CLAIMABLE}) emit([-(doc.priority || 0), doc.created || 0], null);
}`,
  },
  // Claimable tokens of one step (agent --step).
  claimable_by_step: {
    map: `function (doc) {
  if (${IS_CLAIMABLE}) emit([doc.step, -(doc.priority || 0), doc.created || 0], null);
}`,
  },
  // Claimable tokens of one observation, optionally one step (agent --obsid [--step]).
  claimable_by_obsid: {
    map: `function (doc) {
  if (${IS_CLAIMABLE}) emit([doc.obsid, doc.step, -(doc.priority || 0), doc.created || 0], null);
}`,
  },
  // Held leases by expiry time: rows with key < now are reclaimable (agent claim path, tokens scrub).
  leases: {
    map: `function (doc) {
  if (doc.type === 'token' && doc.lease && typeof doc.lease.expires === 'number' &&
      (doc.status === 'locked' || doc.status === 'downloading' || doc.status === 'running' || doc.status === 'uploading')) {
    emit(doc.lease.expires, null);
  }
}`,
  },
  // Tokens with a stored conflict (two branches a CouchDB cluster accepted): tokens conflicts, tokens scrub.
  conflicts: {
    map: `function (doc) {
  if (doc.type === 'token' && doc._conflicts) emit(doc._conflicts.length, null);
}`,
  },
};
