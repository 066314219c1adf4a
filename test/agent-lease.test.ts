/** Lease transitions (claim, heartbeat, finish, release, expire) and the conflict-safe writes, against the real embedded server. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './helpers/server.js';
import { addTokens, freshPool, unguardedPool, type TestPool } from './helpers/agent.js';
import { runCli } from './helpers/cli.js';
import { claim, expire, fence, finish, heartbeat, release, updateToken, writeClaim, giveUpReason, type Claimant, type Outcome } from '../server/lease.js';
import { newToken, type Token } from '../server/token.js';
import { liveLeaves, rightful } from '../server/branches.js';
import { poolCopies } from '../server/tokens/conflicts.js';

const who = (n: number): Claimant => ({ owner: `host${n}:1:aa`, hostname: `host${n}`, batch: { slurm_job_id: `7_${n}`, dirac_job_id: null, wms_job_id: null, pbs_job_id: null } });
const failed = (end: number): Outcome => ({ result: 'retry', exitCode: 1, reason: 'exit code 1', end, phases: { running: 1 } });

test('claim writes lock, lease, attempt and batch ids; finish records history', () => {
  const t0 = newToken({ obsid: 'L1', step: 'cal', subbands: [1] }, 100);
  const c = claim(t0, who(1), 300, 1000, 'c1');
  assert.equal(c.status, 'locked');
  assert.equal(c.lock, 1000);
  assert.equal(c.attempts, 1);
  assert.deepEqual(c.lease, { owner: 'host1:1:aa', claim_id: 'c1', expires: 1300, heartbeat: 1000 });
  assert.equal(c.slurm_job_id, '7_1');
  assert.equal(heartbeat(c, 'other', 300, 1100), null, 'a heartbeat for another claim changes nothing');
  assert.equal(heartbeat(c, 'c1', 300, 1100)!.lease!.expires, 1400);
  const done = finish(c, 'c1', { result: 'done', exitCode: 0, reason: 'done', end: 1200, phases: { running: 200 } }, 1200)!;
  assert.equal(done.status, 'done');
  assert.equal(done.done, 1200);
  assert.equal(done.exit_code, 0);
  assert.equal(done.lease, null);
  assert.deepEqual(done.history, [
    { attempt: 1, claim_id: 'c1', owner: 'host1:1:aa', hostname: 'host1', batch_job_id: '7_1', start: 1000, end: 1200, exit_code: 0, reason: 'done', phases: { running: 200 } },
  ]);
  assert.equal(finish(done, 'c1', failed(1300), 1300), null, 'a second completion changes nothing');
});

test('failures go back to todo until max_attempts, then error with a clear reason', () => {
  let t: Token = newToken({ obsid: 'L1', step: 'cal', subbands: [1] }, 100);
  for (let i = 1; i <= 3; i++) {
    t = claim(t, who(i), 300, 1000 * i, `c${i}`);
    t = finish(t, `c${i}`, failed(1000 * i + 5), 1000 * i + 5)!;
    assert.equal(t.status, i < 3 ? 'todo' : 'error');
  }
  assert.equal(t.reason, 'exit code 1 three times');
  assert.equal(t.exit_code, 1);
  assert.deepEqual(t.history.map((a) => [a.attempt, a.claim_id, a.reason]), [[1, 'c1', 'exit code 1'], [2, 'c2', 'exit code 1'], [3, 'c3', 'exit code 1']]);
  assert.equal(t.error.length, 3);
});

test('an expired lease counts an attempt; three expiries put the token in error', () => {
  let t: Token = newToken({ obsid: 'L1', step: 'cal', subbands: [1] }, 100);
  for (let i = 1; i <= 3; i++) {
    t = claim(t, who(i), 10, 1000 * i, `c${i}`);
    assert.equal(expire(t, 1000 * i + 5), t, 'a live lease is not expired');
    t = expire(t, 1000 * i + 10);
  }
  assert.equal(t.status, 'error');
  assert.equal(t.reason, 'lease expired three times');
  assert.deepEqual(t.history.map((a) => a.reason), ['lease expired', 'lease expired', 'lease expired']);
});

test('a late result is kept when nobody claimed the token after its lease expired', () => {
  let t: Token = claim(newToken({ obsid: 'L1', step: 'cal', subbands: [1] }, 100), who(1), 10, 1000, 'c1');
  t = expire(t, 1020);
  assert.equal(t.status, 'todo');
  const late = finish(t, 'c1', { result: 'done', exitCode: 0, reason: 'done', end: 1025, phases: {} }, 1030)!;
  assert.equal(late.status, 'done');
  assert.deepEqual(late.history.map((a) => a.reason), ['done']);
  const reclaimed = claim(t, who(2), 10, 1021, 'c2');
  assert.equal(finish(reclaimed, 'c1', { result: 'done', exitCode: 0, reason: 'done', end: 1025, phases: {} }, 1030), null, 'the new holder wins');
});

test('preemption gives the attempt back, but not forever', () => {
  let t: Token = newToken({ obsid: 'L1', step: 'cal', subbands: [1] }, 100);
  for (let i = 1; i <= 3; i++) {
    t = release(claim(t, who(i), 300, 1000 * i, `p${i}`), `p${i}`, 1000 * i + 1, {}, 1000 * i + 1)!;
    assert.equal(t.status, 'todo');
    assert.equal(t.attempts, 0);
  }
  t = release(claim(t, who(4), 300, 5000, 'p4'), 'p4', 5001, {}, 5001)!;
  assert.equal(t.attempts, 1, 'the fourth preemption counts');
  assert.match(giveUpReason(t.history, 1), /preempted/);
});

let server: TestServer;
let tp: TestPool;
beforeAll(async () => {
  server = await startTestServer();
  tp = await freshPool(server);
});
afterAll(async () => {
  await server?.stop();
});

test('compare-and-swap: of two claims from the same read, exactly one is written', async () => {
  const [t] = await addTokens(tp.pool, [{ obsid: 'L2', step: 'cal', subbands: [1] }]);
  const read = (await tp.pool.db.get(t!._id)) as Token;
  const a = await writeClaim(tp.pool.db, claim(read, who(1), 300, 1000, 'a'));
  const b = await writeClaim(tp.pool.db, claim(read, who(2), 300, 1000, 'b'));
  assert.ok(a);
  assert.equal(b, null);
});

test('updateToken re-reads on 409 and re-applies; refuses when the claim is gone', async () => {
  const [t] = await addTokens(tp.pool, [{ obsid: 'L2', step: 'cal', subbands: [2] }]);
  const read = (await tp.pool.db.get(t!._id)) as Token;
  const mine = (await writeClaim(tp.pool.db, claim(read, who(1), 300, 1000, 'mine')))!;
  // Someone else touches the token (not the lease): our known _rev is stale.
  await tp.pool.db.insert({ ...mine, note: 'edited' } as Token);
  const done = await updateToken(tp.pool.db, mine._id, (x) => finish(x, 'mine', { result: 'done', exitCode: 0, reason: 'done', end: 1001, phases: {} }, 1001), { known: mine });
  assert.equal(done?.status, 'done');
  const stored = (await tp.pool.db.get(mine._id)) as Token;
  assert.equal(stored.status, 'done');
  assert.equal(stored.note, 'edited');
  assert.equal(await updateToken(tp.pool.db, mine._id, (x) => heartbeat(x, 'mine', 300, 1002)), null);
});

test('fencing: of two claims stored as a conflict, the smaller claim id goes on (whatever CouchDB shows) and the loser deletes its own', async () => {
  const tp = await unguardedPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L2', step: 'cal', subbands: [3] }]);
  const read = (await tp.pool.db.get(t!._id)) as Token;
  const first = (await writeClaim(tp.pool.db, claim(read, who(1), 300, 1000, 'first')))!;
  // What a cluster does when two nodes accept a write each: a sibling revision of the same parent.
  const sibling = claim(read, who(2), 300, 1000, 'second');
  const [gen, hash] = read._rev!.split('-');
  const siblingRev = `${Number(gen) + 1}-${'f'.repeat(32)}`;
  const docs = [{ ...sibling, _rev: siblingRev, _revisions: { start: Number(gen) + 1, ids: ['f'.repeat(32), hash!] } } as unknown as Token];
  await tp.pool.db.bulk({ docs, new_edits: false } as never);
  // Read from every copy (on a cluster a plain read shows one copy's conflicts).
  const copies = await poolCopies(tp.pool);
  const leaves = await liveLeaves(tp.pool.db, t!._id, copies);
  assert.equal(leaves.length, 2, 'the conflict is stored');
  assert.equal(leaves[0]!.lease!.claim_id, 'second', "CouchDB's winner: the higher revision hash");
  assert.equal(await fence(tp.pool.db, { ...sibling, _rev: siblingRev }, copies), false);
  assert.equal(await fence(tp.pool.db, first, copies), true);
  const after = await liveLeaves(tp.pool.db, t!._id, copies);
  assert.deepEqual(after.map((l) => l.lease!.claim_id), ['first'], 'the losing revision is gone');
});

test('ownership of a conflicted token: a final outcome beats a claim, a claim beats a released branch, then the smaller claim id', () => {
  const base = newToken({ obsid: 'L2', step: 'cal', subbands: [4] });
  const a = claim(base, who(1), 300, 1000, 'b-claim');
  const b = claim(base, who(2), 300, 1000, 'a-claim');
  const doneA = finish(a, 'b-claim', { result: 'done', exitCode: 0, reason: 'done', end: 1001, phases: {} }, 1001)!;
  const releasedB = release(b, 'a-claim', 1001, {}, 1001)!;
  assert.equal(rightful([a, b]).lease!.claim_id, 'a-claim');
  assert.equal(rightful([b, a]).lease!.claim_id, 'a-claim', 'the order the copies answer in does not matter');
  assert.equal(rightful([b, doneA]), doneA);
  assert.equal(rightful([releasedB, a]), a);
  assert.equal(rightful([releasedB, base]), releasedB, "between branches nobody holds, CouchDB's winner");
});

test('tokens conflicts lists a token stored with two completed branches; tokens scrub keeps one and records the other in its history', async () => {
  const tp = await unguardedPool(server);
  const [t] = await addTokens(tp.pool, [{ obsid: 'L2', step: 'cal', subbands: [5] }]);
  const read = (await tp.pool.db.get(t!._id)) as Token;
  const done = (x: Token, id: string) => finish(claim(x, who(1), 300, 1000, id), id, { result: 'done', exitCode: 0, reason: 'done', end: 1001, phases: {} }, 1001)!;
  // Two agents' completions on sibling branches, as a cluster can store them.
  const [gen, hash] = read._rev!.split('-');
  const sibling = (id: string, h: string) => ({ ...done(read, id), _rev: `${Number(gen) + 1}-${h}`, _revisions: { start: Number(gen) + 1, ids: [h, hash!] } });
  await tp.pool.db.bulk({ docs: [sibling('claim-b', 'b'.repeat(32)), sibling('claim-a', 'a'.repeat(32))], new_edits: false } as never);
  // A read of every copy also brings a lagging copy up to date, so that the view sees the conflict wherever it reads.
  const copies = await poolCopies(tp.pool);
  assert.equal((await liveLeaves(tp.pool.db, t!._id, copies)).length, 2);
  const auth = ['--db', tp.dbUrl, '--credentials', tp.credentials];

  const listed = await runCli(['tokens', 'conflicts', '--json', ...auth]);
  assert.equal(listed.code, 0, listed.stderr);
  const report = JSON.parse(listed.stdout) as { conflicts: { id: string; owner: { claim: string }; losers: { claim: string }[]; action: string }[] };
  assert.deepEqual(report.conflicts.map((c) => [c.id, c.owner.claim, c.losers.map((l) => l.claim), c.action]), [[t!._id, 'claim-a', ['claim-b'], 'would resolve']]);
  assert.equal((await liveLeaves(tp.pool.db, t!._id, copies)).length, 2, '--resolve not given: nothing changed');

  const scrub = await runCli(['tokens', 'scrub', ...auth]);
  assert.equal(scrub.code, 0, scrub.stderr);
  assert.match(scrub.stdout, /resolved 1 stored conflicts/);
  const left = await liveLeaves(tp.pool.db, t!._id, copies);
  assert.equal(left.length, 1, 'no conflict left');
  const after = left[0]!;
  assert.equal(after.status, 'done');
  assert.deepEqual(after.history.map((a) => [a.claim_id, a.reason]), [['claim-a', 'done'], ['claim-b', 'done (superseded: cluster conflict)']]);
  const again = JSON.parse((await runCli(['tokens', 'conflicts', '--json', ...auth])).stdout) as { conflicts: unknown[] };
  assert.deepEqual(again.conflicts, []);
});

test('tokens scrub: expired leases go back to todo with the attempt in history; --dry-run changes nothing', async () => {
  const tp = await freshPool(server);
  const [t1, t2] = await addTokens(tp.pool, [
    { obsid: 'L3', step: 'cal', subbands: [1] },
    { obsid: 'L3', step: 'cal', subbands: [2] },
  ]);
  const now = Math.floor(Date.now() / 1000);
  const dead = claim((await tp.pool.db.get(t1!._id)) as Token, who(1), 10, now - 100, 'dead');
  const live = claim((await tp.pool.db.get(t2!._id)) as Token, who(2), 600, now, 'live');
  await tp.pool.db.bulk({ docs: [dead, live] });
  const auth = ['--db', tp.dbUrl, '--credentials', tp.credentials];

  const dry = await runCli(['tokens', 'scrub', '--dry-run', '--json', ...auth]);
  assert.equal(dry.code, 0, dry.stderr);
  const dryReport = JSON.parse(dry.stdout) as { expired: { id: string; to: string }[] };
  assert.deepEqual(dryReport.expired.map((e) => [e.id, e.to]), [[t1!._id, 'todo']]);
  assert.equal(((await tp.pool.db.get(t1!._id)) as Token).status, 'locked');

  const run = await runCli(['tokens', 'scrub', '--json', ...auth]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal((JSON.parse(run.stdout) as { expired: unknown[] }).expired.length, 1);
  const scrubbed = (await tp.pool.db.get(t1!._id)) as Token;
  assert.equal(scrubbed.status, 'todo');
  assert.equal(scrubbed.lease, null);
  assert.deepEqual(scrubbed.history.map((h) => [h.claim_id, h.reason]), [['dead', 'lease expired']]);
  assert.equal(((await tp.pool.db.get(t2!._id)) as Token).lease!.claim_id, 'live', 'a live lease is left alone');
});
