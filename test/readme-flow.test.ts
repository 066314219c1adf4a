/**
 * The README's "Using it" flow, as a user types it, on this run's backend (embedded, or a real Apache
 * CouchDB single node or cluster): db init, a pilot account, tokens from a SURL list, an agent with
 * the pilot's credentials, status, failures, reset of the failed token, and the agent again.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/agent.js';
import * as tar from 'tar';

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('readme');
});
afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** An LTA-style list of six measurement-set tarballs, here on the local file system. */
function surlList(): string {
  const lta = path.join(dir, 'lta');
  const lines = [100, 101, 102, 103, 104, 105].map((sb) => {
    const ms = `L229507_SB${sb}_uv.dppp.MS`;
    fs.mkdirSync(path.join(lta, ms), { recursive: true });
    fs.writeFileSync(path.join(lta, ms, 'table.dat'), `visibilities of subband ${sb}\n`);
    const file = path.join(lta, `${ms}_0000${sb}aa.tar`);
    tar.c({ file, cwd: lta, sync: true }, [ms]);
    return `file://${file}`;
  });
  const list = path.join(dir, 'L229507.surls');
  fs.writeFileSync(list, lines.join('\n') + '\n');
  return list;
}

test('db init, a pilot account, tokens add from a SURL list, agent, status, failures, reset: as the README shows', async () => {
  const admin = { TOKENPOOL_DB: server.newDbUrl('lofar'), TOKENPOOL_CREDENTIALS: server.adminCredentialsFile() };
  const cli = async (args: string[], env: Record<string, string> = admin) => {
    const r = await runCli(args, { env, timeoutMs: 120_000 });
    assert.equal(r.code, 0, `tokenpool ${args.join(' ')}: ${r.stderr}`);
    for (const secret of [server.admin.password]) assert.ok(!(r.stdout + r.stderr).includes(secret), 'no password in the output');
    return r.stdout;
  };
  await cli(['db', 'init']);
  const pilot = path.join(dir, 'pilot.json');
  await cli(['db', 'user', 'add', `pilot-${path.basename(dir)}`, '--role', 'agent', '--out', pilot]);
  // Subband 105 fails once: the token holding it ends in error, then succeeds after a reset.
  const flag = path.join(dir, 'failed-once');
  const command = `case ",$SUBBANDS," in *,105,*) [ -e ${flag} ] || { touch ${flag}; echo "no solutions for $TOKEN_ID" >&2; exit 3; };; esac; ls "$INPUT_DIR" > "$OUTPUT_DIR/inputs.txt"`;
  const added = JSON.parse(await cli(['tokens', 'add', '--surls', surlList(), '--step', 'cal1', '--group', '2', '--max-attempts', '1', '--command', command, '--json'])) as { created: number };
  assert.equal(added.created, 3);

  const asPilot = { TOKENPOOL_DB: admin.TOKENPOOL_DB, TOKENPOOL_CREDENTIALS: pilot };
  const agent = ['agent', '--step', 'cal1', '--idle-exit', '2', '--poll', '1', '--jitter', '0', '--runtime', 'none', '--workdir', path.join(dir, 'work')];
  await cli(agent, asPilot);

  const status = JSON.parse(await cli(['status', '--json'])) as { totals: { total: number; counts: Record<string, number> } };
  assert.equal(status.totals.total, 3);
  assert.deepEqual([status.totals.counts.done, status.totals.counts.error], [2, 1]);
  const failures = JSON.parse(await cli(['failures', '--obsid', 'L229507', '--json'])) as { groups: { reason: string; count: number; examples: string[]; log: { lines: string[] } }[] };
  assert.deepEqual(
    failures.groups.map((g) => [g.reason, g.count, g.examples, g.log.lines]),
    [['exit code 3 once', 1, ['L229507_cal1_SB104-105'], ['no solutions for L229507_cal1_SB104-105']]],
  );

  const reset = JSON.parse(await cli(['tokens', 'reset', '--status', 'error', '--obsid', 'L229507', '--step', 'cal1', '--reset-attempts', '--json'])) as { changed: number };
  assert.equal(reset.changed, 1);
  await cli(agent, asPilot);
  const after = JSON.parse(await cli(['status', '--json'])) as { totals: { counts: Record<string, number> } };
  assert.equal(after.totals.counts.done, 3);
});
