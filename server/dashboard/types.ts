/**
 * What the dashboard's own JSON routes answer beyond `StatusSummary`. Plain data without imports of
 * server code: the web page imports these types too.
 */
import type { StatusSummary } from '../status/types.js';

/** The filters of the page and of every route: absent (null) means "all". */
export interface DashboardFilter {
  obsid: string | null;
  step: string | null;
  status: string | null;
}

export interface DashboardSummary extends Omit<StatusSummary, 'filter' | 'pilots'> {
  filter: DashboardFilter;
  /** every observation and step in the pool, for the filter menus (not narrowed by the filter) */
  choices: { obsids: string[]; steps: string[] };
  /** active pipeline runs, newest first (server/pipelines/dashboard.ts) */
  pipelines: PipelineRunView[];
}

/**
 * One pipeline run on the page: its steps in order with their counts per state ("blocked" among
 * them), and the failed tokens that block what needs them (the first few of `failed`).
 */
export interface PipelineRunView {
  run: string;
  name: string;
  created: number;
  observations: Record<string, string>;
  steps: { step: string; per: string; needs: string[]; total: number; counts: Record<string, number> }[];
  /** the first few failed tokens, in step order */
  failures: PipelineFailureView[];
  /** failed tokens in the run, shown or not */
  failed: number;
}

/** A failed token of a run and what it blocks: its direct dependents (in `blocksSteps`), and theirs in turn. */
export interface PipelineFailureView {
  token: string;
  step: string;
  reason: string | null;
  blocks: number;
  blocksSteps: string[];
}

export interface PilotStateCounts {
  queued: number;
  running: number;
  finished: number;
  /** pilots whose state cannot be read from here: grid pilots, or Slurm pilots when squeue cannot tell */
  unknown: number;
}

export interface PilotRecord {
  id: string;
  backend: string;
  jobIds: string[];
  /** Slurm cluster name; null for grid backends */
  cluster: string | null;
  count: number;
  time: number;
  who: string;
  auto: boolean;
  /** null while some pilots may be queued or running */
  finishedAt: number | null;
  pilots: PilotStateCounts;
}

export interface PilotPanel {
  /** newest first, at most `limit` of them */
  submissions: PilotRecord[];
  /** submission records beyond the ones listed */
  more: boolean;
  /** pilots over every submission record in the pool */
  totals: PilotStateCounts;
  /**
   * Whether Slurm was asked: 'read' (squeue answered), 'unavailable' (no squeue here, or it failed:
   * Slurm pilots not known finished are counted unknown), 'not-needed' (no Slurm pilot is active).
   */
  slurm: 'read' | 'unavailable' | 'not-needed';
}
