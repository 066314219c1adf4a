/**
 * The design documents a pool needs, assembled from the view modules:
 *   _design/Monitor            PiCaS's views (views/monitor.ts), for PiCaS tools and habits;
 *   _design/tokenpool          tokenpool's views, collected from every concern's module;
 *   _design/tokenpool_validate the guard: the validate_doc_update function (security.ts), installed
 *                              only on pools that ask for it (`db init --guard`).
 * The validate function lives in its own design document so that installing, changing or removing it
 * never touches a view definition: CouchDB and PouchDB rebuild an index only when its design
 * document's views change.
 */
import { agentViews } from './views/agent.js';
import { dashboardViews } from './views/dashboard.js';
import { monitorViews } from './views/monitor.js';
import { progressViews } from './views/progress.js';
import { pipelineViews } from './views/pipelines.js';
import { submissionViews } from './views/submissions.js';
import type { ViewDef } from './views/types.js';
import { validateDocUpdate } from './security.js';

export const MONITOR_DDOC = 'Monitor';
export const TOKENPOOL_DDOC = 'tokenpool';
export const VALIDATE_DDOC = 'tokenpool_validate';

export interface DesignDoc {
  _id: string;
  _rev?: string;
  language: 'javascript';
  views?: Record<string, ViewDef>;
  validate_doc_update?: string;
}

/** Joins view registries; two modules defining the same view name is a programming error. */
export function mergeViews(registries: Record<string, Record<string, ViewDef>>): Record<string, ViewDef> {
  const merged: Record<string, ViewDef> = {};
  const owner: Record<string, string> = {};
  for (const [module, views] of Object.entries(registries)) {
    for (const [name, view] of Object.entries(views)) {
      if (owner[name]) throw new Error(`view "${name}" is defined by both ${owner[name]} and ${module}`);
      owner[name] = module;
      merged[name] = view;
    }
  }
  return merged;
}

export function designDocs(): DesignDoc[] {
  return [
    { _id: `_design/${MONITOR_DDOC}`, language: 'javascript', views: { ...monitorViews } },
    {
      _id: `_design/${TOKENPOOL_DDOC}`,
      language: 'javascript',
      views: mergeViews({
        'views/progress.ts': progressViews,
        'views/agent.ts': agentViews,
        'views/submissions.ts': submissionViews,
        'views/dashboard.ts': dashboardViews,
        'views/pipelines.ts': pipelineViews,
      }),
    },
  ];
}

/**
 * The guard. Apache CouchDB runs a validate function for every document written, server admins
 * included, in its JavaScript process: a loaded pool then takes tokens at about 0.4 x the rate
 * without it (docs/server.md), so it is optional.
 */
export function guardDesignDoc(): DesignDoc {
  return { _id: `_design/${VALIDATE_DDOC}`, language: 'javascript', validate_doc_update: validateDocUpdate };
}
