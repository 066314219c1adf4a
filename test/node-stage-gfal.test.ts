/**
 * `tokenpool stage --method gfal` end to end: the real CLI, the real embedded server and the REAL
 * gfal-bringonline (gfal2's http plugin), staging against a stand-in of the WLCG Tape REST API on
 * loopback. What gfal sends and prints is gfal's own; only the storage is simulated.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterAll, beforeAll, describe, test } from 'vitest';
import type { Pool } from '../server/client.js';
import { initDatabase } from '../server/setup.js';
import { EXIT, newToken, type Token } from '../server/token.js';
import { runCli } from './helpers/cli.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { startTapeRest, TAPE_API, type TapeRestStandIn } from './helpers/tape-rest.js';

describe('tokenpool stage --method gfal against a Tape REST API', () => {
  let server: TestServer;
  let tape: TapeRestStandIn;

  beforeAll(async () => {
    server = await startTestServer();
    tape = await startTapeRest();
  });

  afterAll(async () => {
    await tape?.close();
    await server?.stop();
  });

  const filePath = (obsid: string, sb: number) => `/pnfs/lofar/ops/projects/lc2_035/${obsid.slice(1)}/${obsid}_SB${String(sb).padStart(3, '0')}_uv.MS.tar`;

  async function seed(obsid: string, subbands: number[], perToken: number, base = tape.base): Promise<{ pool: Pool; dbUrl: string }> {
    const dbUrl = server.newDbUrl('stagegfal');
    const pool = server.adminPool(dbUrl);
    await initDatabase(pool, { guard: true });
    for (let i = 0; i < subbands.length; i += perToken) {
      const sbs = subbands.slice(i, i + perToken);
      await pool.db.insert(newToken({ obsid, step: 'cal1', subbands: sbs, site: 'sara', status: 'staging', input: sbs.map((sb) => ({ url: base + filePath(obsid, sb) })) }));
    }
    // A token in todo must be left alone.
    await pool.db.insert(newToken({ obsid, step: 'other', subbands: [0], input: [{ url: base + filePath(obsid, 0) }] }));
    return { pool, dbUrl };
  }

  const stage = (dbUrl: string, ...args: string[]) =>
    runCli(['stage', '--method', 'gfal', '--db', dbUrl, '--credentials', server.adminCredentialsFile(), ...args], { timeoutMs: 150_000 });

  async function byId(pool: Pool, step = 'cal1'): Promise<Map<string, Token>> {
    const all = await pool.db.list({ include_docs: true });
    const tokens = all.rows.map((r) => r.doc as unknown as Token).filter((t) => t?.type === 'token' && t.step === step);
    return new Map(tokens.map((t) => [t._id, t]));
  }

  interface Summary {
    observations: Array<{ status: string; files: number; online: number; movedToTodo: number; notStaged: number; waiting: number }>;
    movedToTodo: number;
    notStaged: number;
    waiting: number;
  }

  test('tokens go to todo as their files come online, a file the storage fails is "not staged", the rest at the deadline', async () => {
    const obsid = 'L710001';
    const { pool, dbUrl } = await seed(obsid, [100, 101, 102, 103, 104, 105, 106, 107], 2);
    const paths = [100, 101, 102, 103, 104, 105, 106, 107].map((sb) => filePath(obsid, sb));

    // Round 1: all on tape. gfal discovers the endpoint, submits one stage request for the
    // observation's files (paths, as the storage knows them) and polls it once.
    const stagesBefore = tape.count('POST', `${TAPE_API}/stage`);
    let r = await stage(dbUrl, '--json');
    assert.equal(r.code, 0, r.stderr);
    const first = JSON.parse(r.stdout) as Summary;
    assert.deepEqual(first.observations.map((o) => [o.files, o.online, o.waiting, o.status]), [[8, 0, 4, 'in progress']]);
    assert.equal(tape.count('POST', `${TAPE_API}/stage`), stagesBefore + 1);
    const request = [...tape.stageRequests.values()].at(-1)!;
    assert.deepEqual([...request.paths].sort(), [...paths].sort());
    assert.ok(tape.count('GET', `${TAPE_API}/stage/${request.id}`) >= 1, 'gfal polled the request');
    for (const t of (await byId(pool)).values()) {
      assert.equal(t.status, 'staging');
      assert.equal((t.staging as { method: string }).method, 'gfal');
    }

    // The storage brings SB100-104 online and gives up on SB106: two tokens to todo, the one
    // with SB106 becomes "not staged" with the storage's reason, SB104-105 keeps waiting.
    tape.setOnline(...paths.slice(0, 5));
    tape.setFailed(paths[6]!, 'tape cartridge VOL123 unreadable');
    r = await stage(dbUrl);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${obsid}\\s+sara\\s+-\\s+in progress\\s+5/8\\s+62\\.5 %\\s+2\\s+1\\s+1`));
    let tokens = await byId(pool);
    assert.equal(tokens.get(`${obsid}_cal1_SB100-101`)!.status, 'todo');
    assert.equal(tokens.get(`${obsid}_cal1_SB102-103`)!.status, 'todo');
    assert.ok((tokens.get(`${obsid}_cal1_SB102-103`)!.staging as { online?: number }).online! > 0, 'the time it came online is recorded');
    assert.equal(tokens.get(`${obsid}_cal1_SB104-105`)!.status, 'staging');
    const failed = tokens.get(`${obsid}_cal1_SB106-107`)!;
    assert.equal(failed.status, 'error');
    assert.equal(failed.reason, 'not staged');
    assert.equal(failed.exit_code, EXIT.notStaged);
    assert.ok(failed.lock > 0 && failed.done > 0, 'PiCaS sees it as error too');
    assert.match(failed.error.at(-1)!.message, /not staged: 2 of 2 files not online \(\[Tape REST API\] tape cartridge VOL123 unreadable\)/);

    // --watch with the deadline passed: the last token is given up on.
    r = await stage(dbUrl, '--watch', '--interval', '1s', '--deadline', '0s');
    assert.equal(r.code, 0, r.stderr);
    tokens = await byId(pool);
    const last = tokens.get(`${obsid}_cal1_SB104-105`)!;
    assert.equal(last.status, 'error');
    assert.match(last.error.at(-1)!.message, /not staged: 1 of 2 files not online \(deadline passed\)/);
    assert.equal(tokens.get(`${obsid}_cal1_SB100-101`)!.status, 'todo', 'tokens already released stay released');
    assert.equal((await byId(pool, 'other')).values().next().value!.status, 'todo', 'tokens not staging are untouched');
    assert.match(r.stdout, /0 token\(s\) moved to todo, 1 marked "not staged", 0 still staging/);
  });

  test('a storage outage (HTTP 503, endpoint down) leaves tokens staging with the reason shown, not "not staged"', async () => {
    const obsid = 'L710002';
    const { pool, dbUrl } = await seed(obsid, [1, 2, 3, 4], 2);
    const paths = [1, 2, 3, 4].map((sb) => filePath(obsid, sb));

    // gfal reports the failed stage call as FAILED for every file (and exits 0).
    tape.setOutage(503);
    let r = await stage(dbUrl, '--json');
    tape.setOutage(null);
    assert.equal(r.code, 0, r.stderr);
    let summary = JSON.parse(r.stdout) as Summary;
    assert.equal(summary.notStaged, 0);
    assert.equal(summary.waiting, 2);
    assert.match(summary.observations[0]!.status, /^gfal-bringonline failed: \[Tape REST API\] Stage call failed: .*503/);
    for (const t of (await byId(pool)).values()) assert.equal(t.status, 'staging');

    // The storage is back and the files are on disk: both tokens go to todo.
    tape.setOnline(...paths);
    r = await stage(dbUrl, '--json');
    assert.equal(r.code, 0, r.stderr);
    summary = JSON.parse(r.stdout) as Summary;
    assert.deepEqual([summary.movedToTodo, summary.notStaged, summary.waiting], [2, 0, 0]);
    for (const t of (await byId(pool)).values()) assert.equal(t.status, 'todo');

    // A storage nobody answers on (one file: gfal's "Could not connect to server").
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const down = await seed('L710003', [9], 1, `http://127.0.0.1:${closedPort}`);
    r = await stage(down.dbUrl, '--json');
    assert.equal(r.code, 0, r.stderr);
    summary = JSON.parse(r.stdout) as Summary;
    assert.equal(summary.notStaged, 0);
    assert.match(summary.observations[0]!.status, /gfal-bringonline failed: .*Could not connect/);
    assert.equal((await byId(down.pool)).get('L710003_cal1_SB009')!.status, 'staging');
  });
});
