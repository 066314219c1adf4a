/** The parts of a PhaseContext the agent's attempt provides, for tests that run phases on their own. */
import { randomUUID } from 'node:crypto';
import { nowSeconds, type Token } from '../../server/token.js';
import type { PhaseContext } from '../../agent/phases.js';

/** A fresh claim id, and uploads recorded on `token` itself, as the attempt records them on the stored token. */
export function attemptParts(token: Token): Pick<PhaseContext, 'claimId' | 'recordUpload'> {
  return {
    claimId: randomUUID(),
    recordUpload: async (upload) => {
      token.stage_out_uploads = [...(token.stage_out_uploads ?? []), { ...upload, time: upload.time || nowSeconds() }];
      return true;
    },
  };
}
