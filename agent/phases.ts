/**
 * The seam between the agent's lifecycle (claim, lease, run, report: agent/) and what happens on the
 * worker node around the step (software image, proxy, stage-in, stage-out: agent/node/).
 */
import type { Logger } from '../server/log.js';
import type { OutputFile, Token, Upload } from '../server/token.js';
import { TokenpoolError } from '../server/errors.js';

export interface PhaseContext {
  token: Token;
  /** Per-token scratch directory; the step runs here. */
  scratchDir: string;
  /** Stage-in puts (unpacked) inputs here: <scratchDir>/input */
  inputDir: string;
  /** The step writes its results here: <scratchDir>/output; stage-out packs this directory. */
  outputDir: string;
  /** Environment the step will see (TOKEN_ID, OBSID, SUBBAND, …); phases may add to it. */
  env: Record<string, string>;
  log: Logger;
  /** Aborted when the agent stops or loses the lease: phases must stop promptly. */
  signal: AbortSignal;
  /** This attempt's claim id: names what the attempt writes before it publishes it. */
  claimId: string;
  /**
   * Records an upload on the token while the claim is ours. False when it could not be written (the
   * database unreachable); when the claim is lost, `signal` is aborted by the time this resolves.
   */
  recordUpload(upload: Upload): Promise<boolean>;
}

/**
 * A phase failed for a reason tokenpool records on the token: `reason` is the short text shown in
 * status and failure reports ("checksum mismatch", "image not found: /cvmfs/…"), `exitCode` one of
 * EXIT in server/token.ts, `retryable` false when another attempt cannot help (e.g. 404, checksum).
 */
export class PhaseError extends TokenpoolError {
  constructor(
    readonly reason: string,
    readonly tokenExitCode: number,
    readonly retryable: boolean,
    detail?: string,
  ) {
    super(detail ? `${reason}: ${detail}` : reason);
  }
}

/**
 * The node, not the token, is at fault (no usable grid proxy, no runtime for the image): the token goes
 * back to todo without using up an attempt and the agent stops claiming, so that one broken node
 * cannot burn a whole observation's attempts in seconds.
 */
export class NodeFault extends PhaseError {
  constructor(reason: string, tokenExitCode: number, detail?: string) {
    super(reason, tokenExitCode, true, detail);
  }
}

export interface CwlContainer {
  engine: 'singularity' | 'podman';
  /** cwltool's --default-container: the image path (singularity) or local image name (podman) */
  image: string | null;
}

export interface WorkerNode {
  /** Checked before each claim; throws a TokenpoolError when this node cannot run work (proxy, CVMFS). */
  preflight(): Promise<void>;
  /** Fetches, verifies and unpacks the token's inputs into ctx.inputDir. */
  stageIn(ctx: PhaseContext): Promise<void>;
  /** The program and arguments that run `command` (a shell command line) under the software runtime. */
  wrapCommand(ctx: PhaseContext, command: string): { file: string; args: string[] };
  /** For a CWL step with `container: node`: the engine cwltool uses and the image it names (resolved at stage-in). */
  cwlContainer(ctx: PhaseContext): CwlContainer;
  /** Packs and uploads ctx.outputDir; returns what to record in the token's `output`. */
  stageOut(ctx: PhaseContext): Promise<OutputFile[]>;
  /** Facts to record on the token for provenance (image path and identity, runtime). */
  provenance(ctx: PhaseContext): Promise<Record<string, unknown>>;
}
