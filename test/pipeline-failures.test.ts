/**
 * How a pipeline run copes: a crash between an upstream outcome and its release (scrub repairs it),
 * a failed subband that blocks only what needs it, min_fraction fan-in, `tokens reset` unblocking,
 * and many upstream tokens finishing at once (exactly one release per dependent, on a cluster too).
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startTestServer, type TestServer } from './helpers/server.js';
import { allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess, type TestPool } from './helpers/agent.js';
import { runCli } from './helpers/cli.js';
import { releasesOf } from './helpers/pipeline.js';
import { claim, writeClaim, type TokenDb } from '../server/lease.js';
import { recordOutcome } from '../agent/attempt.js';
import { releaseDependents } from '../agent/release.js';
import { createLogger } from '../server/log.js';
import { liveLeaves, SETTLE_MS } from '../server/branches.js';
import { nowSeconds, type Token } from '../server/token.js';
import { dashboardSummary } from '../server/dashboard/summary.js';
import { readerFromPool } from '../server/status/reader.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('pipefail');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A step writes one small file; it fails (exit 3) while a marker file fail-<step>-<subband> exists. */
const STEP = (name: string) => `test ! -e "{{dir}}/fail-${name}-$SUBBAND" || exit 3; echo ${name} $SUBBANDS > "$OUTPUT_DIR/${name}.txt"`;

function definition(file: string): void {
  fs.writeFileSync(
    file,
    `name: small
observations: [obs]
parameters:
  dir: {type: string}
  results: {type: string}
steps:
  - {name: a, observation: obs, surls: true, command: '${STEP('a')}', max_attempts: 1, results: '{{results}}/\${STEP}/\${TOKEN_ID}.tar'}
  - name: b
    observation: obs
    needs: [{step: a, take: subband}]
    command: '${STEP('b')}'
    results: '{{results}}/\${STEP}/\${TOKEN_ID}.tar'
  - name: c
    observation: obs
    per: group
    group: 4
    needs: [{step: b, take: group}]
    command: '${STEP('c')}'
    results: '{{results}}/\${STEP}/\${TOKEN_ID}.tar'
  - name: all
    observation: obs
    per: observation
    needs: [{step: a, min_fraction: 0.8}]
    command: '${STEP('all')}'
    results: '{{results}}/\${STEP}/\${TOKEN_ID}.tar'
`,
  );
}

/** An observation of n subbands as small files with LOFAR names, and its SURL list. */
function observation(where: string, obsid: string, n: number): string {
  fs.mkdirSync(where, { recursive: true });
  const lines: string[] = [];
  for (let sb = 0; sb < n; sb++) {
    const f = path.join(where, `${obsid}_SB${String(sb).padStart(3, '0')}_uv.MS_0000abcd.dat`);
    fs.writeFileSync(f, `${obsid} ${sb}\n`);
    lines.push(pathToFileURL(f).href);
  }
  const list = path.join(where, `${obsid}.surls`);
  fs.writeFileSync(list, lines.join('\n') + '\n');
  return list;
}

async function newRun(tp: TestPool, name: string, obsid: string, n: number): Promise<{ run: string; work: string }> {
  const work = path.join(dir, name);
  const def = path.join(work, 'small.yaml');
  const surls = observation(work, obsid, n);
  definition(def);
  const res = await cli(tp, ['pipeline', 'run', def, '--obs', `obs=${obsid}`, '--surls', `obs=${surls}`, '--set', `dir=${work}`, '--set', `results=${pathToFileURL(path.join(work, 'results')).href}`, '--json']);
  assert.equal(res.code, 0, res.stderr);
  return { run: (JSON.parse(res.stdout) as { run: string }).run, work };
}

const cli = (tp: TestPool, args: string[]) => runCli([...args, '--db', tp.dbUrl, '--credentials', tp.credentials]);
const byId = (all: Token[], suffix: string) => all.find((t) => t._id.endsWith(suffix))!;
const quiet = createLogger('test', { level: 'silent', pretty: false });
const who = (i: number) => ({ owner: `test-agent-${i}`, hostname: 'test', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } });

/** What an agent does for a token, up to its stored outcome: claim, then done with one output. */
async function finishDone(db: TokenDb, t: Token, i: number): Promise<Token> {
  const mine = await writeClaim(db, claim(t, who(i), 600, nowSeconds()));
  assert.ok(mine, `claimed ${t._id}`);
  const now = nowSeconds();
  const written = await recordOutcome(db, t._id, mine.lease!.claim_id, { result: 'done', exitCode: 0, reason: 'done', end: now, phases: {}, output: [{ url: `file:///results/${t._id}.tar`, size: 10, adler32: '0000abcd' }] });
  assert.ok(written);
  return written;
}

test('an agent that dies between an upstream done and the release loses nothing: tokens scrub releases', async () => {
  const tp = await freshPool(server);
  const { run } = await newRun(tp, 'crash', 'L300', 2);
  const a0 = byId(await allTokens(tp.pool), '_a_SB000');
  // The outcome is stored; the release that would follow never happens (the agent was killed).
  await finishDone(tp.pool.db, a0, 0);
  assert.equal(byId(await allTokens(tp.pool), '_b_SB000').status, 'waiting');

  const scrub = await cli(tp, ['tokens', 'scrub']);
  assert.equal(scrub.code, 0, scrub.stderr);
  assert.match(scrub.stdout, /pipeline runs: 1 tokens released, 0 blocked, 0 unblocked/);
  const b0 = byId(await allTokens(tp.pool), '_b_SB000');
  assert.equal(b0.status, 'todo');
  assert.deepEqual(b0.input, [{ url: `file:///results/${a0._id}.tar`, size: 10, adler32: '0000abcd' }]);
  assert.equal(b0.pipeline!.released, (await tp.pool.db.get(a0._id)).done);
  // The dashboard shows the run: steps in order with their counts.
  const page = await dashboardSummary(readerFromPool(tp.pool), { obsid: null, step: null, status: null }, 3600);
  assert.deepEqual(page.pipelines.map((r) => [r.run, r.steps.map((st) => [st.step, st.total, st.counts.done ?? 0, st.counts.todo ?? 0])]), [
    [run, [['a', 2, 1, 1], ['b', 2, 0, 1], ['c', 1, 0, 0], ['all', 1, 0, 0]]],
  ]);
  // Nothing else was due; a second pass writes nothing.
  const again = await cli(tp, ['pipeline', 'advance', run, '--json']);
  assert.deepEqual(JSON.parse(again.stdout), { released: [], blocked: [], unblocked: [], conflicts: 0, runs: 1 });
});

test('a failed subband blocks only what needs it; min_fraction lets the fan-in go on; tokens reset unblocks', async () => {
  const tp = await freshPool(server);
  const { run, work } = await newRun(tp, 'blocked', 'L301', 8);
  fs.writeFileSync(path.join(work, 'fail-a-1'), '');
  for (let i = 0; i < 2; i++) agents.push(startAgent(tp, ['--idle-exit', '4', '--poll', '1', '--workdir', path.join(work, `agent${i}`)]));
  for (const a of agents.splice(0)) assert.equal((await a.exited).code, 0, a.logs().slice(-2000));

  let all = await allTokens(tp.pool);
  const state = (suffix: string) => {
    const t = byId(all, suffix);
    return t.status === 'waiting' && t.pipeline!.blocked_by?.length ? 'blocked' : t.status;
  };
  assert.equal(state('_a_SB001'), 'error');
  assert.equal(state('_b_SB001'), 'blocked');
  assert.match(byId(all, '_b_SB001').reason!, /^blocked: .*_a_SB001 failed \(exit code 3/);
  assert.equal(state('_c_SB000-003'), 'blocked', 'blocked in turn by the blocked b');
  assert.match(byId(all, '_c_SB000-003').reason!, /_b_SB001 failed/);
  for (const s of ['_b_SB000', '_b_SB007', '_c_SB004-007']) assert.equal(state(s), 'done', s);
  const fanIn = byId(all, '_all_SB000-007');
  assert.equal(fanIn.status, 'done');
  assert.deepEqual(fanIn.pipeline!.missing, [byId(all, '_a_SB001')._id]);
  assert.equal(fanIn.input.length, 7);

  const status = await cli(tp, ['pipeline', 'status', run]);
  assert.match(status.stdout, /^b\s+subband\s+a\s+8\s+0\s+1\s+0\s+0\s+7\s+0\s+87%$/m);
  assert.match(status.stdout, /_a_SB001: exit code 3 once; feeds 2 tokens of b, all$/m);

  fs.rmSync(path.join(work, 'fail-a-1'));
  const reset = await cli(tp, ['tokens', 'reset', byId(all, '_a_SB001')._id]);
  assert.equal(reset.code, 0, reset.stderr);
  assert.match(reset.stdout, /2 pipeline tokens unblocked/);
  agents.push(startAgent(tp, ['--idle-exit', '4', '--poll', '1', '--workdir', path.join(work, 'agent-after')]));
  await waitFor('every token done', async () => (await allTokens(tp.pool)).every((t) => t.status === 'done'), 120_000);
  all = await allTokens(tp.pool);
  assert.equal(byId(all, '_all_SB000-007').history.length, 1, 'the fan-in that went on is not run again');
  for (const a of agents.splice(0)) assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
});

test('many upstream tokens finishing at once: every dependent released exactly once, no conflicts', async () => {
  const tp = await freshPool(server);
  const { run } = await newRun(tp, 'race', 'L302', 24);
  const nodes = tp.nodeUrls ?? [tp.dbUrl];
  const cluster = nodes.length > 1;
  const copies = cluster ? { n: 3, settleMs: SETTLE_MS } : null;
  const ups = (await allTokens(tp.pool)).filter((t) => t.step === 'a');
  // Every upstream token finished by its own "agent", on its own node, released concurrently.
  await Promise.all(
    ups.map(async (t, i) => {
      const db = server.adminPool(nodes[i % nodes.length]!).db;
      const written = await finishDone(db, t, i);
      await releaseDependents(db, written, copies, quiet);
    }),
  );
  const all = await allTokens(tp.pool);
  const dependents = all.filter((t) => t.step === 'b' || t.step === 'all');
  assert.equal(dependents.length, 25);
  for (const t of dependents) {
    assert.equal(t.status, 'todo', t._id);
    assert.equal(await releasesOf(tp.pool, t._id), 1, t._id);
    if (cluster) assert.equal((await liveLeaves(tp.pool.db, t._id, { n: 3, settleMs: 0 })).length, 1, `${t._id} has one branch`);
  }
  assert.equal(byId(all, '_all_SB000-023').input.length, 24);
  const again = await cli(tp, ['pipeline', 'advance', run, '--json']);
  assert.equal((JSON.parse(again.stdout) as { released: string[] }).released.length, 0);
});
