/** The worker node as the agent sees it: built from the agent's flags (see agent/phases.ts). */
import type { Argv } from 'yargs';
import type { Logger } from '../../server/log.js';
import { EXIT } from '../../server/token.js';
import { PhaseError, type WorkerNode } from '../phases.js';

export interface WorkerNodeArgs {
  image?: string;
}

/** Flags of `tokenpool agent` that describe the node: image, runtime, proxy, transfers. */
export function workerNodeOptions<T>(y: Argv<T>): Argv<T & WorkerNodeArgs> {
  return y.option('image', { type: 'string', describe: 'Software image on CVMFS for tokens that name none' }) as Argv<T & WorkerNodeArgs>;
}

export function createWorkerNode(_args: WorkerNodeArgs, _log: Logger): WorkerNode {
  return {
    async preflight() {},
    async stageIn(ctx) {
      if (ctx.token.input.length > 0) throw new PhaseError('stage-in not implemented yet', EXIT.downloadFailed, false);
    },
    wrapCommand(_ctx, command) {
      return { file: '/bin/sh', args: ['-c', command] };
    },
    async stageOut() {
      return [];
    },
    async provenance() {
      return {};
    },
  };
}
