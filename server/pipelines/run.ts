/**
 * The run document: what a run was made from (definition, observations, parameters, images) and
 * what was done to it since (cancel, reruns). One per run, id `pipeline:<run>`; its tokens name it.
 */
import type { Need, ParameterValue } from './definition.js';

export const RUN_PREFIX = 'pipeline:';

export interface ImageRecord {
  path: string;
  /** sha256:… of a file, or the digest a docker:// reference pins; null when not reachable from where the run was made */
  id: string | null;
}

export interface RunStep {
  name: string;
  observation: string;
  per: 'subband' | 'group' | 'observation';
  group?: number;
  needs: Need[];
  image: ImageRecord | null;
  cwl?: { workflow: string; sha256: string | null; runner: string };
  tokens: number;
}

export interface RunDoc {
  _id: string;
  _rev?: string;
  type: 'pipeline_run';
  run: string;
  name: string;
  description?: string;
  definition: {
    file: string;
    sha256: string;
    text: string;
    /** when the definition comes from a git checkout */
    git?: { commit: string; path: string; dirty: boolean };
  };
  observations: Record<string, string>;
  parameters: Record<string, ParameterValue>;
  steps: RunStep[];
  status: 'active' | 'cancelled';
  created: number;
  cancelled?: number;
  reruns: { time: number; from: string; steps: string[]; image?: ImageRecord; previous_image?: ImageRecord | null }[];
}

export const runDocId = (run: string) => `${RUN_PREFIX}${run}`;

export function isRunDoc(doc: unknown): doc is RunDoc {
  return !!doc && typeof doc === 'object' && (doc as { type?: unknown }).type === 'pipeline_run';
}
