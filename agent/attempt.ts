/**
 * One attempt at one token, from claim to recorded outcome: scratch directory, lease heartbeat,
 * phases (stage-in, run, stage-out) through the WorkerNode, and a final write that is never lost
 * (409: re-read and re-apply while the claim is ours; database unreachable: local journal).
 */
import fs from 'node:fs';
import os from 'node:os';
import type { Logger } from '../server/log.js';
import { NODE_PROBLEM, enterPhase, finish, heartbeat, recordUpload, updateToken, type Outcome, type TokenDb } from '../server/lease.js';
import { branchClaim, dropBranch, resolveToken, superseded, type Copies } from '../server/branches.js';
import { EXIT, nowSeconds, type Token } from '../server/token.js';
import { NodeFault, PhaseError, type PhaseContext, type WorkerNode } from './phases.js';
import { makeScratch, stepEnv, tail, writeTokenFiles, type ScratchDirs } from './files.js';
import { runStep } from './step.js';
import { FullWatch, scratchTrouble } from './disk.js';
import { hostFacts } from './host.js';
import type { Journal } from './journal.js';
import { isUnreachable } from './retry.js';
import { releaseDependents } from './release.js';
import { cwlCommand, cwlOf, cwlOutputs } from './cwl.js';

export const LOG_TAIL_BYTES = 64 * 1024;
/**
 * A phase is written to the token (status downloading/running/uploading) once it has lasted this long.
 * Shorter phases show only in the outcome (`times`, `history[].phases`), so that a token whose phases
 * do nothing costs two writes, the claim and the outcome, and the pool keeps up with many quick tokens.
 */
export const PHASE_SHOW_MS = 1000;

/** How long the outcome waits for a phase or heartbeat write still in flight. */
const PENDING_WRITE_WAIT_MS = 10_000;

type Phase = 'downloading' | 'running' | 'uploading';

export interface AttemptDeps {
  db: TokenDb;
  /** set on a CouchDB cluster: every write reads all copies and goes to the owner's branch */
  copies: Copies | null;
  node: WorkerNode;
  journal: Journal;
  log: Logger;
  workdir: string;
  leaseSeconds: number;
  graceS: number;
  defaultCommand?: string;
  keepScratch: boolean;
  /** contain steps in a cgroup of their own where this node allows it (else the /proc search alone) */
  cgroups: boolean;
  /** called when an outcome went to the journal */
  onJournaled: () => void;
}

/** Why an attempt was stopped from outside. */
export interface StopReason {
  kind: 'preempted' | 'lease lost';
  /** seconds the step gets between TERM and KILL */
  graceS: number;
}

class LeaseLost extends Error {}

export class TokenAttempt {
  readonly id: string;
  readonly claimId: string;
  readonly attempt: number;
  /** set when the attempt failed because of this node: the agent must stop claiming */
  nodeFault: NodeFault | null = null;
  private readonly abort = new AbortController();
  private current: Token;
  /** The token as we last wrote it, while no failed write has made it doubtful */
  private known: Token | undefined;
  private readonly log: Logger;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** the write that shows the current phase on the token, while it has not been made */
  private phaseTimer: NodeJS.Timeout | undefined;
  private readonly phases: Record<string, number> = {};
  private readonly started: Partial<Record<Phase, number>> = {};
  /** the phase under way: a failure's text of a full disk is only believed for local work (not an upload) */
  private phase: Phase | null = null;
  private dirs: ScratchDirs | null = null;
  private fullWatch: FullWatch | null = null;
  /** Writes go out one at a time, so that a phase write never lands after the outcome. */
  private writes: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly deps: AttemptDeps,
    token: Token,
    claimId: string,
  ) {
    this.current = token;
    this.known = token;
    this.id = token._id;
    this.claimId = claimId;
    this.attempt = token.attempts;
    this.log = deps.log.child({ token: this.id, attempt: this.attempt });
  }

  get stopped(): StopReason | null {
    return this.abort.signal.aborted ? (this.abort.signal.reason as StopReason) : null;
  }

  /** Preemption (SIGTERM, end of the time budget): stop the step, give the token back. */
  stop(reason: StopReason): void {
    if (!this.abort.signal.aborted) this.abort.abort(reason);
  }

  /** Runs the attempt to its recorded (or journaled) outcome; never throws. */
  async run(): Promise<Outcome['result'] | 'lost'> {
    const { deps } = this;
    this.log.info({ phase: 'locked', claim_id: this.claimId }, 'claimed');
    let dirs: ScratchDirs | null = null;
    this.startHeartbeat();
    let outcome: Outcome;
    try {
      dirs = makeScratch(deps.workdir, this.current, this.claimId);
      this.dirs = dirs;
      this.fullWatch = new FullWatch(dirs.scratchDir);
      outcome = await this.work(dirs);
    } catch (err) {
      outcome = this.failure(err);
    } finally {
      clearInterval(this.heartbeatTimer);
      this.fullWatch?.stop();
      this.leave();
    }
    try {
      if (this.stopped?.kind === 'lease lost') {
        this.log.warn({ phase: 'lost' }, 'lease lost to another agent: result not recorded');
        return 'lost';
      }
      if (dirs) outcome.attachments = this.logAttachments(dirs);
      outcome.facts = { ...outcome.facts, host: await hostFacts().catch(() => undefined) };
      return await this.report(outcome);
    } finally {
      if (dirs && !deps.keepScratch) fs.rmSync(dirs.scratchDir, { recursive: true, force: true });
    }
  }

  private async work(dirs: ScratchDirs): Promise<Outcome> {
    const { deps } = this;
    const token = this.current;
    const ctx: PhaseContext = {
      token,
      scratchDir: dirs.scratchDir,
      inputDir: dirs.inputDir,
      outputDir: dirs.outputDir,
      env: stepEnv(token, dirs),
      log: this.log,
      signal: this.abort.signal,
      claimId: this.claimId,
      recordUpload: (upload) => this.write((t) => recordUpload(t, this.claimId, upload, deps.leaseSeconds, nowSeconds())),
    };
    await writeTokenFiles(deps.db, token, dirs);

    await this.timed('downloading', () => deps.node.stageIn(ctx));
    const command = token.command ?? deps.defaultCommand;
    if (!command) throw new PhaseError('no command to run: the token has none and the agent was started without --command', EXIT.malformedToken, false);

    this.enter('running');
    const cwl = cwlOf(token);
    const { file, args } = cwl ? cwlCommand(ctx, cwl, cwl.container === 'node' ? deps.node.cwlContainer(ctx) : null) : deps.node.wrapCommand(ctx, command);
    const res = await runStep({
      file,
      args,
      cwd: dirs.scratchDir,
      env: ctx.env,
      stdoutFile: dirs.stdoutFile,
      stderrFile: dirs.stderrFile,
      timeLimitS: token.requirements.time_limit_s,
      graceS: deps.graceS,
      cgroups: deps.cgroups,
      signal: this.abort.signal,
    });
    this.leave();
    this.phases.running = round(res.seconds);
    this.log.info({ phase: 'running', exit_code: res.exitCode, signal: res.signal, seconds: this.phases.running }, 'step ended');
    if (this.stopped) return this.stoppedOutcome(res.exitCode);
    if (res.timedOut || res.exitCode !== 0) {
      // A step that failed on a full, over-quota or read-only scratch failed because of the node.
      const trouble = scratchTrouble(dirs.scratchDir, { sawFull: this.fullWatch?.sawFull ?? false, stderr: tail(dirs.stderrFile, LOG_TAIL_BYTES).toString() });
      if (trouble) throw trouble;
    }
    if (res.timedOut) {
      return this.outcome('retry', EXIT.timeLimit, `time limit of ${token.requirements.time_limit_s} s exceeded`);
    }
    if (res.exitCode !== 0) {
      const code = res.exitCode ?? 128 + signalNumber(res.signal);
      return this.outcome('retry', code, res.exitCode === null ? `killed by ${res.signal}` : `exit code ${code}`);
    }

    // Read before stage-out: a runner that reported no output object fails before anything is uploaded.
    const cwlOutput = cwl ? cwlOutputs(dirs.stdoutFile, dirs.outputDir) : null;
    const output = await this.timed('uploading', () => deps.node.stageOut(ctx));
    const provenance = await deps.node.provenance(ctx);
    return { ...this.outcome('done', 0, 'done'), output, facts: cwlOutput ? { ...provenance, cwl_output: cwlOutput } : provenance };
  }

  private outcome(result: Outcome['result'], exitCode: number | null, reason: string): Outcome {
    return { result, exitCode, reason, end: nowSeconds(), phases: { ...this.phases }, started: { ...this.started } };
  }

  private stoppedOutcome(exitCode: number | null): Outcome {
    return this.outcome('preempted', exitCode, 'preempted');
  }

  private failure(err: unknown): Outcome {
    if (this.stopped) return this.stoppedOutcome(null);
    if (!(err instanceof NodeFault)) err = this.diskTrouble(err) ?? err;
    if (err instanceof NodeFault) {
      this.log.error({ reason: err.reason, detail: err.message }, 'this node cannot run the token: giving it back');
      this.nodeFault = err;
      // The history keeps the fault's exit code (credentials, image, scratch), the token none: it is todo again.
      return { ...this.outcome('preempted', err.tokenExitCode, `${NODE_PROBLEM}: ${err.reason}`), detail: err.message };
    }
    if (err instanceof PhaseError) {
      this.log.warn({ reason: err.reason, exit_code: err.tokenExitCode, retryable: err.retryable, detail: err.message }, 'phase failed');
      return { ...this.outcome(err.retryable ? 'retry' : 'fatal', err.tokenExitCode, err.reason), detail: err.message };
    }
    const message = err instanceof Error ? err.message : String(err);
    this.log.error({ err: message }, 'attempt failed inside the agent');
    return this.outcome('retry', 1, `agent error: ${message}`);
  }

  /**
   * A failure of the agent's own work (scratch, token files, stage-in, packing) caused by a full,
   * over-quota or read-only scratch. During an upload a "no space" in the error may be the storage
   * element's, so there only the local disk itself counts.
   */
  private diskTrouble(err: unknown): NodeFault | null {
    const dir = this.dirs?.scratchDir ?? this.deps.workdir;
    return scratchTrouble(dir, { err: this.phase === 'uploading' ? undefined : err, sawFull: this.fullWatch?.sawFull ?? false });
  }

  /** Runs a phase with its status on the token and its duration recorded. */
  private async timed<T>(phase: 'downloading' | 'uploading', fn: () => Promise<T>): Promise<T> {
    this.enter(phase);
    const started = Date.now();
    try {
      return await fn();
    } finally {
      this.leave();
      this.phases[phase] = round((Date.now() - started) / 1000);
    }
  }

  /**
   * Starts a phase; it shows on the token (extending the lease) if it lasts PHASE_SHOW_MS. A database
   * outage does not stop the work.
   */
  private enter(phase: Phase): void {
    if (this.stopped) throw new LeaseLost('stopped');
    this.log.info({ phase }, `phase ${phase}`);
    this.phase = phase;
    const since = nowSeconds();
    this.started[phase] = since;
    this.leave();
    this.phaseTimer = setTimeout(() => {
      this.phaseTimer = undefined;
      void this.write((t) => enterPhase(t, this.claimId, phase, this.deps.leaseSeconds, nowSeconds(), since));
    }, PHASE_SHOW_MS);
  }

  /** The phase ended: if it was not shown yet, it will not be. */
  private leave(): void {
    clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
  }

  private startHeartbeat(): void {
    const everyMs = Math.max(1000, (this.deps.leaseSeconds * 1000) / 3);
    this.heartbeatTimer = setInterval(() => {
      void this.write((t) => heartbeat(t, this.claimId, this.deps.leaseSeconds, nowSeconds())).then((ok) => {
        if (ok) this.log.debug({ phase: this.current.status }, 'lease extended');
      });
    }, everyMs);
  }

  /** A lease-guarded write, after those already queued; false when it could not be made. Losing the claim stops the attempt. */
  private write(change: (t: Token) => Token | null): Promise<boolean> {
    const done = this.writes.then(() => this.writeNow(change));
    this.writes = done;
    return done;
  }

  private async writeNow(change: (t: Token) => Token | null): Promise<boolean> {
    try {
      const written = await updateToken(this.deps.db, this.id, change, { known: this.known, copies: this.deps.copies });
      if (written) {
        this.current = written;
        this.known = written;
        return true;
      }
      this.stop({ kind: 'lease lost', graceS: this.deps.graceS });
      return false;
    } catch (err) {
      this.known = undefined; // re-read next time
      this.log.warn({ err: errText(err) }, 'could not update the token; carrying on');
      return false;
    }
  }

  private logAttachments(dirs: ScratchDirs): Outcome['attachments'] {
    const out = tail(dirs.stdoutFile, LOG_TAIL_BYTES);
    const err = tail(dirs.stderrFile, LOG_TAIL_BYTES);
    return {
      [`logs_${this.attempt}.out`]: { content_type: 'text/plain', data: out.toString('base64') },
      [`logs_${this.attempt}.err`]: { content_type: 'text/plain', data: err.toString('base64') },
    };
  }

  /** The final write: re-applied on 409 while the claim is ours; journaled when the database is unreachable. */
  private async report(outcome: Outcome): Promise<Outcome['result'] | 'lost'> {
    // A phase or heartbeat write still out would only cost the outcome a 409 and a re-read; a hung one must not hold it.
    let waited: NodeJS.Timeout | undefined;
    await Promise.race([this.writes, new Promise((resolve) => (waited = setTimeout(resolve, PENDING_WRITE_WAIT_MS)))]);
    clearTimeout(waited);
    try {
      const written = await recordOutcome(this.deps.db, this.id, this.claimId, outcome, { known: this.known, copies: this.deps.copies });
      if (!written) {
        this.log.warn({ phase: 'report' }, 'the token was claimed by another agent meanwhile: result not recorded');
        return 'lost';
      }
      this.log.info({ phase: written.status, exit_code: outcome.exitCode, reason: outcome.reason, phases: outcome.phases }, `recorded: ${written.status}`);
      await releaseDependents(this.deps.db, written, this.deps.copies, this.log);
      return outcome.result;
    } catch (err) {
      if (!isUnreachable(err)) {
        this.log.error({ err: errText(err) }, 'the database refused the result');
        return 'lost';
      }
      const file = this.deps.journal.write({ tokenId: this.id, claimId: this.claimId, attempt: this.attempt, outcome, written: nowSeconds() });
      this.log.warn({ phase: 'journal', file, err: errText(err) }, 'database unreachable: outcome kept in the local journal');
      this.deps.onJournaled();
      return outcome.result;
    }
  }
}

/**
 * Writes an outcome guarded by the claim id; null when the claim is no longer ours. On a cluster the
 * outcome goes on the owning branch only, and is checked once more after the write: a claim that
 * reached some copy only now (its node was away at the fence) may have ended too. The rule of
 * branches.ts keeps one; a losing outcome is recorded in the owner's history and its branch ends.
 */
export async function recordOutcome(db: TokenDb, id: string, claimId: string, outcome: Outcome, opts: { known?: Token; copies?: Copies | null } = {}): Promise<Token | null> {
  const { copies } = opts;
  const written = await updateToken(db, id, (t) => finish(t, claimId, outcome, nowSeconds()), opts);
  if (!written || !copies) return written;
  const { token: owner } = await resolveToken(db, id, copies);
  if (owner._rev === written._rev || branchClaim(owner) === claimId) return written;
  const ours = written.history[written.history.length - 1]!;
  await updateToken(db, id, (t) => (branchClaim(t) === claimId || t.history.some((a) => a.claim_id === claimId) ? null : { ...t, history: [...t.history, superseded(ours)] }), { copies });
  await dropBranch(db, written);
  return null;
}

function round(s: number): number {
  return Math.round(s * 1000) / 1000;
}

function signalNumber(sig: string | null): number {
  const n = sig ? (os.constants.signals as Record<string, number>)[sig] : undefined;
  return typeof n === 'number' ? n : 0;
}

export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
