/**
 * `npm run bench:pipeline`: what dependencies cost. A LINC-shaped run (docs/pipelines/linc-demo.yaml:
 * calibrator per subband → solve → target per subband → concat per 10) of ≥ 2,000 tokens is written,
 * then finished step by step by simulated agents doing exactly what an agent does when a step ends
 * (claim, outcome, release of the dependents: agent/release.ts), 8 at a time. Per step it measures
 * the time from the last upstream outcome to the release writes done and to every dependent being
 * in the agents' `claimable` view; at the end, the writes per token read from the revision numbers
 * (create, claim, outcome = 3; a release adds 1). Targets (issue #12): ≤ 1 extra write per dependent,
 * < 1 s from the last upstream done to claimable on the embedded server.
 * Writes bench-results/pipeline.json. Usage: npm run bench:pipeline [-- TARGET_SUBBANDS] [--only embedded] [--url URL]
 */
import fs from 'node:fs';
import path from 'node:path';
import { initDatabase } from '../server/setup.js';
import { TOKENPOOL_DDOC } from '../server/design.js';
import { parseDefinition, resolveParameters } from '../server/pipelines/definition.js';
import { planRun } from '../server/pipelines/plan.js';
import { writeRun } from '../server/pipelines/runs.js';
import { claim, writeClaim, type TokenDb } from '../server/lease.js';
import { recordOutcome } from '../agent/attempt.js';
import { releaseDependents } from '../agent/release.js';
import { createLogger } from '../server/log.js';
import { PROJECT_ROOT } from '../server/own-module.js';
import { nowSeconds, type Token } from '../server/token.js';
import type { Pool } from '../server/client.js';
import type { Copies } from '../server/branches.js';
import { onEachBackend, openBackends, parseBenchArgs, target, type Backend, type Target } from './backends.js';
import { writeResults } from './results.js';

const AGENTS = 8;
const CAL_SUBBANDS = 240;
const log = createLogger('bench', { level: 'silent', pretty: false });

function surls(obsid: string, n: number): string {
  return Array.from({ length: n }, (_, sb) => `file:///bench/${obsid}/${obsid}_SB${String(sb).padStart(3, '0')}_uv.MS_0000abcd.tar`).join('\n') + '\n';
}

function plan(targetSubbands: number) {
  const file = path.join(PROJECT_ROOT, 'docs', 'pipelines', 'linc-demo.yaml');
  const text = fs.readFileSync(file, 'utf8');
  const definition = parseDefinition(text, file);
  return planRun({
    definition,
    definitionText: text,
    definitionFile: file,
    observations: { calibrator: 'L100001', target: 'L100002' },
    surls: { calibrator: surls('L100001', CAL_SUBBANDS), target: surls('L100002', targetSubbands) },
    parameters: resolveParameters(definition, ['average=true', 'calibrate=true']),
    images: {},
    cwl: {},
    staging: false,
    now: nowSeconds(),
  });
}

interface StepFigures {
  step: string;
  tokens: number;
  dependents: number;
  /** last upstream outcome stored → every release write done */
  release_ms: number;
  /** last upstream outcome stored → the first dependents in the claimable view (a wide fan-out is written in pieces) */
  first_claimable_ms: number;
  /** last upstream outcome stored → every dependent in the claimable view */
  claimable_ms: number;
}

/** Finishes every token of a step as AGENTS agents would; returns when the last outcome was stored and when its releases ended. */
async function finishStep(pools: Pool[], ids: string[], copies: Copies | null): Promise<{ lastDone: number; releasesEnd: number }> {
  let next = 0;
  let lastDone = 0;
  let releasesEnd = 0;
  await Promise.all(
    Array.from({ length: AGENTS }, async (_, a) => {
      const db = pools[a % pools.length]!.db as TokenDb;
      const who = { owner: `bench-${a}`, hostname: 'bench', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } };
      for (let i = next++; i < ids.length; i = next++) {
        const t = (await db.get(ids[i]!)) as Token;
        const mine = await writeClaim(db, claim(t, who, 600, nowSeconds()));
        if (!mine) throw new Error(`could not claim ${t._id}`);
        const now = nowSeconds();
        const written = await recordOutcome(db, t._id, mine.lease!.claim_id, { result: 'done', exitCode: 0, reason: 'done', end: now, phases: {}, output: [{ url: `file:///bench/results/${t._id}.tar`, size: 1000, adler32: '0000abcd' }] }, { copies });
        if (!written) throw new Error(`outcome of ${t._id} not stored`);
        lastDone = Math.max(lastDone, performance.now());
        await releaseDependents(db, written, copies, log);
        releasesEnd = Math.max(releasesEnd, performance.now());
      }
    }),
  );
  return { lastDone, releasesEnd };
}

async function claimableCount(pool: Pool): Promise<number> {
  const res = await pool.db.view(TOKENPOOL_DDOC, 'claimable', { limit: 0 } as never);
  return res.total_rows;
}

async function benchOn(b: Backend, targetSubbands: number): Promise<{ tokens: number; steps: StepFigures[]; writes: Record<string, number>; targets: Record<string, Target> }> {
  const dbUrl = await b.freshDb('pipeline');
  const pools = b.nodes.map((_, i) => b.pool(dbUrl, i));
  const pool = pools[0]!;
  await initDatabase(pool, {});
  const p = plan(targetSubbands);
  const t0 = performance.now();
  await writeRun(pool, p);
  process.stderr.write(`# ${p.tokens.length} tokens written in ${Math.round(performance.now() - t0)} ms\n`);
  await claimableCount(pool); // build the index before timing

  const steps: StepFigures[] = [];
  const names = p.run.steps.map((s) => s.name);
  for (const [i, step] of names.entries()) {
    const ids = p.tokens.filter((t) => t.step === step).map((t) => t._id);
    const next = names[i + 1];
    const dependents = next ? p.tokens.filter((t) => t.step === next).length : 0;
    const { lastDone, releasesEnd } = await finishStep(pools, ids, b.copies);
    let claimableAt = performance.now();
    let firstAt = 0;
    if (dependents) {
      for (;;) {
        const n = await claimableCount(pool);
        claimableAt = performance.now();
        if (n > 0 && !firstAt) firstAt = claimableAt;
        if (n >= dependents) break;
        if (claimableAt - lastDone > 120_000) throw new Error(`${next}: only ${n} of ${dependents} claimable after 2 min`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const fig = { step, tokens: ids.length, dependents, release_ms: Math.round(releasesEnd - lastDone), first_claimable_ms: dependents ? Math.round(firstAt - lastDone) : 0, claimable_ms: dependents ? Math.round(claimableAt - lastDone) : 0 };
    process.stderr.write(`# ${JSON.stringify(fig)}\n`);
    steps.push(fig);
  }

  const all = (await pool.db.list({ include_docs: true })).rows.map((r) => r.doc as Token).filter((d) => d?.type === 'token');
  const revs = (t: Token) => Number(t._rev!.split('-')[0]);
  const dependents = all.filter((t) => t.pipeline!.needs.length > 0);
  const extra = (ts: Token[]) => ts.reduce((n, t) => n + revs(t) - 3, 0);
  const writes = {
    per_token: round(all.reduce((n, t) => n + revs(t), 0) / all.length),
    extra_per_token: round(extra(all) / all.length),
    extra_per_dependent: round(extra(dependents) / dependents.length),
    first_step_extra: round(extra(all.filter((t) => t.pipeline!.needs.length === 0)) / Math.max(1, all.length - dependents.length)),
  };
  await b.dropDb(dbUrl);
  const worst = Math.max(...steps.filter((s) => s.dependents).map((s) => s.claimable_ms));
  return {
    tokens: all.length,
    steps,
    writes,
    targets: {
      release_writes_per_dependent: target('≤ 1', writes.extra_per_dependent, (x) => x <= 1),
      done_to_claimable_ms: target('< 1000 (embedded server)', worst, (x) => x < 1000, 'worst step'),
    },
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

async function main(): Promise<void> {
  const args = parseBenchArgs();
  const targetSubbands = args.numbers[0] ?? 1600;
  const backends = await openBackends(args);
  const sections = await onEachBackend(backends, (b) => benchOn(b, targetSubbands));
  const embedded = sections.find((s) => s.backend.kind === 'embedded');
  writeResults('pipeline', {
    bench: 'pipeline',
    date: new Date().toISOString(),
    shape: { calibrator_subbands: CAL_SUBBANDS, target_subbands: targetSubbands, agents: AGENTS },
    targets: embedded ? embedded.targets : null,
    per_backend: sections,
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:pipeline failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
