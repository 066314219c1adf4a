/**
 * The agent's main loop: flush the journal, claim while there is room and time, run each claimed
 * token as a TokenAttempt, and stop well (SIGTERM/SIGINT, end of the time budget, idle, max tokens).
 */
import os from 'node:os';
import fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Pool } from '../server/client.js';
import type { Logger } from '../server/log.js';
import { translateDbError } from '../server/db-errors.js';
import type { Claimant } from '../server/lease.js';
import type { Token } from '../server/token.js';
import { NodeFault, type WorkerNode } from './phases.js';
import { checkScratch } from './disk.js';
import { TokenpoolError } from '../server/errors.js';
import { Claimer, type ClaimSource } from './claim.js';
import { TokenAttempt, errText, recordOutcome } from './attempt.js';
import { Journal } from './journal.js';
import { releaseDependents } from './release.js';
import { backoffMs, isUnreachable, sleep } from './retry.js';
import { batchIds } from './batch.js';
import type { Slots } from './options.js';
import type { Copies } from '../server/branches.js';

export interface AgentConfig {
  pool: Pool;
  node: WorkerNode;
  log: Logger;
  source: ClaimSource;
  slots: Slots;
  /** cores of this node, for slots auto */
  cores: number;
  maxTokens?: number;
  /** Unix time (ms) at which the agent must have stopped */
  deadlineMs?: number;
  idleExitS?: number;
  workdir: string;
  command?: string;
  leaseS: number;
  graceS: number;
  jitterS: number;
  pollS: number;
  window: number;
  /** how to read a pool kept in several copies (CouchDB cluster); null on a single copy */
  copies: Copies | null;
  keepScratch: boolean;
  /** contain steps in a cgroup v2 of their own where the node allows it */
  cgroups: boolean;
  /** bytes that must be free in the work directory before a claim */
  minFreeBytes: number;
}

/** Agent exit codes (docs/agent.md). */
export const AGENT_EXIT = { ok: 0, input: 2, database: 3, preflight: 4 } as const;

export class Agent {
  readonly owner: string;
  readonly claimant: Claimant;
  private readonly claimer: Claimer;
  private readonly journal: Journal;
  private readonly running = new Map<string, { attempt: TokenAttempt; cost: number; done: Promise<void> }>();
  private readonly stopping = new AbortController();
  private wake: (() => void) | null = null;
  private claimedCount = 0;
  private journalPending = false;
  /** why this node cannot run work, found while running a token */
  private nodeFault: NodeFault | null = null;

  constructor(private readonly cfg: AgentConfig) {
    const hostname = os.hostname();
    this.owner = `${hostname}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.claimant = { owner: this.owner, hostname, batch: batchIds() };
    this.claimer = new Claimer({
      db: cfg.pool.db,
      who: this.claimant,
      leaseSeconds: cfg.leaseS,
      source: cfg.source,
      window: cfg.window,
      copies: cfg.copies,
      log: cfg.log,
    });
    this.journal = new Journal(cfg.workdir);
  }

  get capacity(): number {
    return this.cfg.slots.kind === 'fixed' ? this.cfg.slots.count : this.cfg.cores;
  }

  private cost(t: Token): number {
    return this.cfg.slots.kind === 'fixed' ? 1 : (t.requirements.cores ?? 1);
  }

  private used(): number {
    let n = 0;
    for (const r of this.running.values()) n += r.cost;
    return n;
  }

  /** Stops claiming and preempts running steps; run() then returns once tokens are given back. */
  stop(why: string): void {
    if (this.stopping.signal.aborted) return;
    this.cfg.log.info({ why, running: this.running.size }, 'stopping');
    this.stopping.abort();
    // Keep a quarter of the grace period (at most 5 s) for giving the tokens back.
    const reserve = Math.min(5, this.cfg.graceS / 4);
    for (const r of this.running.values()) r.attempt.stop({ kind: 'preempted', graceS: Math.max(0, this.cfg.graceS - reserve) });
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async run(): Promise<number> {
    const { log } = this.cfg;
    fs.mkdirSync(this.cfg.workdir, { recursive: true });
    log.info({ owner: this.owner, db: this.cfg.pool.displayUrl, capacity: this.capacity, lease: this.cfg.leaseS, source: this.cfg.source }, 'agent started');
    await this.flushJournal();
    if (this.cfg.jitterS > 0) await sleep(Math.random() * this.cfg.jitterS * 1000, this.stopping.signal);

    let exitWhy = 'stopped';
    try {
      exitWhy = await this.loop();
    } catch (err) {
      this.stop(`error: ${errText(err)}`);
      await this.settle();
      throw err;
    }
    log.info({ why: exitWhy, claimed: this.claimedCount, stats: this.claimer.stats, journal: this.journal.files().length }, 'agent exiting');
    if (this.nodeFault) {
      throw new TokenpoolError(`this node cannot run work: ${this.nodeFault.message}`, 'A token it held was given back untouched; fix the node (proxy, runtime, space or quota in --workdir) and start the agent again.', AGENT_EXIT.preflight);
    }
    return AGENT_EXIT.ok;
  }

  private async settle(): Promise<void> {
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private async loop(): Promise<string> {
    const { log } = this.cfg;
    let idleSince = Date.now();
    let failures = 0;
    let exitWhy = 'stopped';
    while (!this.stopping.signal.aborted) {
      if (this.cfg.deadlineMs !== undefined && Date.now() >= this.cfg.deadlineMs - this.cfg.graceS * 1000) {
        this.stop('time budget used up');
        exitWhy = 'max-time';
        break;
      }
      const budgetLeft = this.cfg.maxTokens === undefined || this.claimedCount < this.cfg.maxTokens;
      let sawNothing = false;
      let pause = this.cfg.pollS * 1000 * (0.8 + Math.random() * 0.4);
      if (budgetLeft && this.used() < this.capacity) {
        if (!this.scratchUsable()) {
          exitWhy = 'node problem';
          break;
        }
        try {
          await this.cfg.node.preflight();
          const got = await this.claimer.next((t) => this.accepts(t));
          failures = 0;
          if (got) {
            this.start(got.token, got.claimId);
            idleSince = Date.now();
            continue;
          }
          sawNothing = true;
        } catch (err) {
          if (!isUnreachable(err)) throw err;
          failures++;
          pause = backoffMs(failures, this.cfg.pollS);
          log.warn({ err: errText(err), retry_in_s: Math.round(pause / 1000) }, 'database unreachable while looking for work');
          this.claimer.reset();
          idleSince = Date.now();
        }
      }
      if (this.running.size > 0 || this.journalPending) idleSince = Date.now();
      if (!budgetLeft && this.running.size === 0 && !this.journalPending) {
        exitWhy = 'max-tokens';
        break;
      }
      if (sawNothing && this.cfg.idleExitS !== undefined && this.running.size === 0 && !this.journalPending && Date.now() - idleSince >= this.cfg.idleExitS * 1000) {
        exitWhy = 'idle';
        break;
      }
      if (sawNothing && this.cfg.idleExitS !== undefined) pause = Math.min(pause, Math.max(200, this.cfg.idleExitS * 1000 - (Date.now() - idleSince)));
      if (this.cfg.deadlineMs !== undefined) pause = Math.min(pause, Math.max(200, this.cfg.deadlineMs - this.cfg.graceS * 1000 - Date.now()));
      await this.idle(pause);
    }
    await this.settle();
    return exitWhy;
  }

  /** A full, over-quota or read-only work directory: no claim, and the agent stops as for any node problem. */
  private scratchUsable(): boolean {
    try {
      checkScratch(this.cfg.workdir, this.cfg.minFreeBytes);
      return true;
    } catch (err) {
      if (!(err instanceof NodeFault)) throw err;
      this.cfg.log.error({ reason: err.reason, detail: err.message }, 'this node cannot run work: not claiming');
      this.nodeFault ??= err;
      this.stop(`node problem: ${err.reason}`);
      return false;
    }
  }

  /** Waits for a slot to free, the poll interval, or a stop. */
  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wake === done) self.wake = null;
        resolve();
      }
      this.wake = done;
      if (this.stopping.signal.aborted) done();
    });
  }

  private accepts(t: Token): boolean {
    const cost = this.cost(t);
    if (cost > this.capacity - this.used()) return false;
    const expected = t.requirements.expected_s;
    if (expected !== undefined && this.cfg.deadlineMs !== undefined && Date.now() + expected * 1000 > this.cfg.deadlineMs) return false;
    return true;
  }

  private start(token: Token, claimId: string): void {
    this.claimedCount++;
    const attempt = new TokenAttempt(
      {
        db: this.cfg.pool.db,
        copies: this.cfg.copies,
        node: this.cfg.node,
        journal: this.journal,
        log: this.cfg.log,
        workdir: this.cfg.workdir,
        leaseSeconds: this.cfg.leaseS,
        graceS: this.cfg.graceS,
        defaultCommand: this.cfg.command,
        keepScratch: this.cfg.keepScratch,
        cgroups: this.cfg.cgroups,
        onJournaled: () => this.scheduleJournalFlush(),
      },
      token,
      claimId,
    );
    const key = `${token._id} ${claimId}`;
    const done = attempt.run().then(
      () => {
        if (attempt.nodeFault && !this.nodeFault) {
          this.nodeFault = attempt.nodeFault;
          this.stop(`node problem: ${attempt.nodeFault.reason}`);
        }
      },
      (err: unknown) => this.cfg.log.error({ token: token._id, err: errText(err) }, 'attempt crashed'),
    ).finally(() => {
      this.running.delete(key);
      this.poke();
    });
    this.running.set(key, { attempt, cost: this.cost(token), done });
  }

  /** Replays journaled outcomes until none is left, backing off while the database is away. */
  private scheduleJournalFlush(): void {
    if (this.journalPending) return;
    this.journalPending = true;
    void (async () => {
      for (let failures = 0; ; failures++) {
        await sleep(backoffMs(failures), this.stopping.signal);
        if (this.stopping.signal.aborted) break;
        const left = await this.flushJournal();
        if (left === 0) break;
      }
      this.journalPending = false;
      this.poke();
    })();
  }

  /** Replays the journal once; returns how many entries are still waiting. */
  async flushJournal(): Promise<number> {
    const { log } = this.cfg;
    if (this.journal.files().length === 0) return 0;
    const res = await this.journal.flush(async (e) => {
      const written = await recordOutcome(this.cfg.pool.db, e.tokenId, e.claimId, e.outcome, { copies: this.cfg.copies });
      log.info({ token: e.tokenId, attempt: e.attempt, phase: 'journal', recorded: written ? written.status : 'dropped' }, written ? 'journaled outcome recorded' : 'journaled outcome dropped: the token was claimed again meanwhile');
      if (written) await releaseDependents(this.cfg.pool.db, written, this.cfg.copies, log);
      return written ? 'applied' : 'dropped';
    });
    const left = this.journal.files().length;
    if (res.errors.length) log.warn({ kept: res.kept, err: errText(res.errors[0]) }, 'journal not flushed yet');
    if (left > 0 && !this.journalPending && res.errors.some(isUnreachable)) this.scheduleJournalFlush();
    return left;
  }
}

/** Opens the pool and checks it answers; decides fencing from its cluster settings. */
export async function connect(pool: Pool, fenceMode: 'auto' | 'always' | 'never', settleS: number, log: Logger): Promise<Copies | null> {
  for (let failures = 0; ; failures++) {
    try {
      const info = (await pool.db.info()) as unknown as { cluster?: { n?: number } };
      const n = info.cluster?.n ?? 1;
      const fence = fenceMode === 'auto' ? n > 1 : fenceMode === 'always';
      return fence ? { n, settleMs: Math.round(settleS * 1000) } : null;
    } catch (err) {
      if (!isUnreachable(err) || failures >= 3) throw translateDbError(err, { url: pool.displayUrl, action: 'read the pool', role: 'tokenpool_agent', authenticated: pool.credentials !== null });
      const wait = backoffMs(failures, 8);
      log.warn({ err: errText(err), retry_in_s: Math.round(wait / 1000) }, 'database unreachable at start');
      await sleep(wait);
    }
  }
}
