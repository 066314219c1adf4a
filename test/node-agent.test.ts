/**
 * End to end through `tokenpool agent` (real processes): the embedded server holds the tokens,
 * nginx is the storage element. A good token is staged in, run, staged out and recorded; a token
 * whose input fails its checksum ends in error without its step running; with no proxy the agent
 * refuses to claim, or, when only a claimed token shows that it needs one, gives that token back
 * untouched and stops.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, test } from 'vitest';
import * as tar from 'tar';
import { EXIT, type Token } from '../server/token.js';
import { addTokens, freshPool, startAgent, tempDir } from './helpers/agent.js';
import { startNginx, type Nginx } from './helpers/nginx.js';
import { startTestServer, type TestServer } from './helpers/server.js';
import { zlibAdler32File as pyAdler32 } from './helpers/zlib-adler32.js';

let server: TestServer;
let nginx: Nginx;
let work: string;

beforeAll(async () => {
  server = await startTestServer();
  nginx = await startNginx();
  work = tempDir('node-agent');
});

afterAll(async () => {
  await nginx.close();
  await server.stop();
  fs.rmSync(work, { recursive: true, force: true });
});

test('agent: stage-in, step, stage-out recorded on the token; a checksum mismatch never reaches the step', async () => {
  const tp = await freshPool(server);
  const src = path.join(work, 'src');
  fs.mkdirSync(path.join(src, 'L800001_SB010_uv.MS'), { recursive: true });
  fs.writeFileSync(path.join(src, 'L800001_SB010_uv.MS', 'table.f0'), 'visibilities\n');
  fs.mkdirSync(path.join(nginx.root, 'lta'), { recursive: true });
  const tarFile = path.join(nginx.root, 'lta', 'L800001_SB010_uv.MS_7f3a9c21.tar');
  await tar.c({ file: tarFile, cwd: src }, ['L800001_SB010_uv.MS']);
  const marker = path.join(work, 'bad-step-ran');
  await addTokens(tp.pool, [
    {
      obsid: 'L800001',
      step: 'cal1',
      subbands: [10],
      input: [{ url: `${nginx.url}/lta/L800001_SB010_uv.MS_7f3a9c21.tar`, adler32: pyAdler32(tarFile) }],
      command: 'mkdir -p output && cat input/L800001_SB010_uv.MS/table.f0 > output/calibrated.txt',
    },
    {
      obsid: 'L800001',
      step: 'cal1',
      subbands: [11],
      input: [{ url: `${nginx.url}/lta/L800001_SB010_uv.MS_7f3a9c21.tar`, adler32: 'deadbeef' }],
      command: `touch ${marker}`,
    },
  ]);
  const agent = startAgent(tp, [
    '--workdir', path.join(work, 'agent'), '--idle-exit', '2', '--poll', '1',
    '--results', '${RESULTS}/${OBSID}/${STEP}/${TOKEN_ID}.tar', '--results-base', `${nginx.url}/results`,
    '--retry-delay', '0.2s',
  ]);
  const { code } = await agent.exited;
  assert.equal(code, 0, agent.logs());

  const good = (await tp.pool.db.get('L800001_cal1_SB010')) as Token;
  assert.equal(good.status, 'done', JSON.stringify(good.history));
  const stored = path.join(nginx.root, 'results', 'L800001', 'cal1', 'L800001_cal1_SB010.tar');
  assert.deepEqual(good.output, [{ url: `${nginx.url}/results/L800001/cal1/L800001_cal1_SB010.tar`, size: fs.statSync(stored).size, adler32: pyAdler32(stored), attempt: 1 }]);
  const names: string[] = [];
  await tar.t({ file: stored, onReadEntry: (e) => names.push(e.path) });
  assert.deepEqual(names, ['calibrated.txt']);
  assert.equal((good.software as { runtime: string }).runtime, 'none');

  const bad = (await tp.pool.db.get('L800001_cal1_SB011')) as Token;
  assert.equal(bad.status, 'error');
  assert.equal(bad.exit_code, EXIT.checksumMismatch);
  assert.match(bad.reason ?? '', /checksum mismatch/);
  assert.ok(!fs.existsSync(marker), 'the step of the token with a bad input never ran');
});

test('agent: no grid proxy where one is required → refuses to claim, says why', async () => {
  const tp = await freshPool(server);
  await addTokens(tp.pool, [{ obsid: 'L800002', step: 'cal1', subbands: [1], command: 'true' }]);
  const agent = startAgent(tp, ['--workdir', path.join(work, 'agent2'), '--require-proxy', 'yes', '--idle-exit', '2'], { X509_USER_PROXY: path.join(work, 'no-such-proxy') });
  const { code } = await agent.exited;
  assert.notEqual(code, 0);
  assert.match(agent.logs(), /no grid proxy at .*no-such-proxy/);
  assert.equal(((await tp.pool.db.get('L800002_cal1_SB001')) as Token).status, 'todo', 'nothing was claimed');
});

test('agent: a token needing a proxy this node lacks goes back untouched, and the agent stops claiming', async () => {
  const tp = await freshPool(server);
  const srm = (sb: number) => ({ url: `srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_038/800003/L800003_SB00${sb}_uv.MS_0a1b2c3d.tar` });
  await addTokens(
    tp.pool,
    [1, 2, 3, 4].map((sb) => ({ obsid: 'L800003', step: 'cal1', subbands: [sb], input: [srm(sb)], command: 'true' })),
  );
  // --require-proxy auto: the need shows only once a claimed token names srm inputs.
  const agent = startAgent(tp, ['--workdir', path.join(work, 'agent3'), '--slots', '1', '--idle-exit', '2'], { X509_USER_PROXY: path.join(work, 'no-such-proxy') });
  const { code } = await agent.exited;
  assert.equal(code, 4, `exit code 4 (this node cannot run work); logs:\n${agent.logs()}`);
  assert.match(agent.logs(), /this node cannot run work: no usable grid proxy: no grid proxy at .*no-such-proxy/);
  const tokens = await Promise.all([1, 2, 3, 4].map(async (sb) => (await tp.pool.db.get(`L800003_cal1_SB00${sb}`)) as Token));
  const tried = tokens.filter((t) => t.history.length > 0);
  assert.equal(tried.length, 1, 'the agent stopped after the first token showed the node lacks a proxy');
  for (const t of tokens) {
    assert.equal(t.status, 'todo');
    assert.equal(t.attempts, 0, 'a node problem does not use up an attempt');
  }
  assert.equal(tried[0]!.history[0]!.reason, 'node problem: no usable grid proxy');
  assert.match(tried[0]!.error.at(-1)!.message, /no grid proxy at .*no-such-proxy/, 'the full reason is in the token\'s error log');
});
