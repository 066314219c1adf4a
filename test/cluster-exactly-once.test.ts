/**
 * Exactly once on a real CouchDB cluster (n = 3): agents spread over the three nodes drain many short
 * tokens. No token may end with two recorded completions or with a stored conflict; steps that ran
 * twice (possible only when a claim reaches a copy after the fence read all of them) are counted and
 * reported. Runs on the cluster backend only.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BACKEND, startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, allTokens, freshPool, killAgent, startAgent, tempDir, type AgentProcess } from './helpers/agent.js';
import type { Token } from '../server/token.js';
import { claim, fence, writeClaim, type Claimant } from '../server/lease.js';
import { liveLeaves, SETTLE_MS } from '../server/branches.js';

const TOKENS = 500;
const AGENTS = 9;

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];
// vitest.config.ts runs this file in the cluster project only.
const onCluster = BACKEND !== 'cluster';

beforeAll(async () => {
  if (onCluster) return;
  server = await startTestServer();
  dir = tempDir('cluster-once');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test(`${AGENTS} agents over 3 nodes drain ${TOKENS} short tokens: none done twice, no stored conflict left`, { skip: onCluster, timeout: 600_000 }, async ({ annotate }) => {
  const tp = await freshPool(server, { guard: false });
  assert.equal(tp.nodeUrls?.length, 3, 'three nodes');
  const runs = path.join(dir, 'runs.txt');
  await addTokens(
    tp.pool,
    Array.from({ length: TOKENS }, (_, i) => ({ obsid: 'L400', step: 'cal', subbands: [i], command: `echo "$TOKEN_ID $ATTEMPT" >> ${runs}; sleep 0.2` })),
  );
  for (let i = 0; i < AGENTS; i++) {
    agents.push(startAgent(tp, ['--slots', '2', '--idle-exit', '5', '--poll', '1', '--workdir', path.join(dir, `w${i}`)]));
  }
  const exits = await Promise.all(agents.map((a) => a.exited));
  for (const [i, e] of exits.entries()) assert.equal(e.code, 0, `agent ${i}: ${agents[i]!.logs().slice(-2000)}`);

  const perToken = new Map<string, number>();
  for (const line of fs.readFileSync(runs, 'utf8').trim().split('\n')) perToken.set(line.split(' ')[0]!, (perToken.get(line.split(' ')[0]!) ?? 0) + 1);
  const ranTwice = [...perToken].filter(([, n]) => n > 1).map(([id]) => id);
  const fencesLost = agents.reduce((n, a) => n + a.events().filter((e) => e.msg === 'claim lost at the fence').length, 0);
  await annotate(`steps run twice: ${ranTwice.length} (${ranTwice.join(', ') || 'none'}); claims lost at the fence: ${fencesLost}`);

  const stored = await allTokens(tp.pool);
  assert.equal(stored.length, TOKENS);
  assert.equal(perToken.size, TOKENS, 'every token ran');
  const conflicted: string[] = [];
  const doneTwice: string[] = [];
  for (const token of stored) {
    assert.equal(token.status, 'done', `${token._id}: ${JSON.stringify(token.history)}`);
    const full = (await tp.pool.db.get(token._id, { conflicts: true, r: 3 } as never)) as Token & { _conflicts?: string[] };
    if (full._conflicts?.length) conflicted.push(token._id);
    if (full.history.filter((a) => a.reason === 'done').length !== 1) doneTwice.push(token._id);
  }
  assert.deepEqual(conflicted, [], 'no stored conflicts left');
  assert.deepEqual(doneTwice, [], 'one recorded completion per token');
});

test('three claims of the same revision through the three nodes at once: exactly one passes the fence, no conflict is left', { skip: onCluster, timeout: 300_000 }, async ({ annotate }) => {
  const tp = await freshPool(server, { guard: false });
  const pools = tp.nodeUrls!.map((url) => server.adminPool(url));
  const tokens = await addTokens(tp.pool, Array.from({ length: 60 }, (_, i) => ({ obsid: 'L401', step: 'cal', subbands: [i] })));
  const copies = { n: 3, settleMs: SETTLE_MS };
  const who = (i: number): Claimant => ({ owner: `racer-${i}`, hostname: 'h', batch: { slurm_job_id: null, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } });
  let contested = 0;
  for (const token of tokens) {
    const base = (await tp.pool.db.get(token._id, { r: 3 } as never)) as Token;
    const written = await Promise.all(pools.map((pool, i) => writeClaim(pool.db, claim(base, who(i), 300, 1000, `claim-${i}-${Math.random().toString(36).slice(2)}`))));
    if (written.filter(Boolean).length > 1) contested++;
    const results = await Promise.all(written.map((w, i) => (w ? fence(pools[i]!.db, w, copies) : false)));
    assert.equal(results.filter(Boolean).length, 1, `${token._id}: exactly one claim stands (${JSON.stringify(results)})`);
    const leaves = await liveLeaves(tp.pool.db, token._id, copies);
    assert.equal(leaves.length, 1, `${token._id}: no stored conflict left`);
  }
  await annotate(`races where the cluster accepted more than one claim: ${contested} of ${tokens.length}`);
});
