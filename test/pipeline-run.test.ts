/**
 * Pipelines end to end with real agents: the shipped LINC-shaped definition on the demo's synthetic
 * data (calibrator per subband → solve → target per subband → concat per 10), idempotent runs,
 * exactly one release per dependent, a rerun from a step.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { startTestServer, type TestServer } from './helpers/server.js';
import { allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess, type TestPool } from './helpers/agent.js';
import { runCli } from './helpers/cli.js';
import { nodeArgs, ownModule, PROJECT_ROOT } from '../server/own-module.js';
import { generateObservation } from '../scripts/demo/generate.js';
import type { Token } from '../server/token.js';
import type { RunDoc } from '../server/pipelines/run.js';
import { releasesOf } from './helpers/pipeline.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('pipeline');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

const DEFINITION = path.join(PROJECT_ROOT, 'docs', 'pipelines', 'linc-demo.yaml');
const shell = (args: string[]) => args.map((a) => `'${a}'`).join(' ');
const AVERAGE = shell([process.execPath, ...nodeArgs(ownModule('../scripts/demo/average', import.meta.url))]);
const CALIBRATE = shell([process.execPath, ...nodeArgs(ownModule('../scripts/demo/calibrate', import.meta.url))]);
const SHAPE = { ntime: 16, nbaseline: 6, nchan: 16 };

const cli = (tp: TestPool, args: string[]) => runCli([...args, '--db', tp.dbUrl, '--credentials', tp.credentials]);

test('the LINC-shaped pipeline runs end to end with several agents; each dependent released once with its upstream outputs; a rerun from a step', { timeout: 400_000 }, async () => {
  const tp = await freshPool(server);
  const cal = await generateObservation({ dir, obsid: 'L862010', subbands: 6, firstSubband: 100, shape: SHAPE });
  const target = await generateObservation({ dir, obsid: 'L862012', subbands: 12, firstSubband: 100, shape: SHAPE });
  const results = path.join(dir, 'results');
  const args = [
    'pipeline', 'run', DEFINITION,
    '--obs', 'calibrator=L862010', '--obs', 'target=L862012',
    '--surls', `calibrator=${cal.surlList}`, '--surls', `target=${target.surlList}`,
    '--set', `average=${AVERAGE}`, '--set', `calibrate=${CALIBRATE}`, '--set', `results=${pathToFileURL(results).href}`, '--set', 'time_avg=2',
  ];

  // Nothing is written when anything is wrong: a missing observation, an unknown parameter.
  const noTarget = await cli(tp, args.filter((a) => !a.startsWith('target=')));
  assert.equal(noTarget.code, 2, noTarget.stderr);
  assert.match(noTarget.stderr, /observation target not given: add --obs target=L…/);
  const badParam = await cli(tp, [...args, '--set', 'nope=1', '--set', 'time_avg=two']);
  assert.equal(badParam.code, 2, badParam.stderr);
  assert.match(badParam.stderr, /linc-demo has no parameter nope/);
  assert.match(badParam.stderr, /--set time_avg=two: must be a number/);
  assert.equal((await allTokens(tp.pool)).length, 0);

  const first = await cli(tp, [...args, '--json']);
  assert.equal(first.code, 0, first.stderr);
  const written = JSON.parse(first.stdout) as { run: string; created: number; runCreated: boolean };
  assert.equal(written.created, 6 + 1 + 12 + 2);
  const again = JSON.parse((await cli(tp, [...args, '--json'])).stdout) as { run: string; created: number; present: number; runCreated: boolean };
  assert.deepEqual([again.run, again.created, again.present, again.runCreated], [written.run, 0, 21, false]);

  const tokens = await allTokens(tp.pool);
  const byStep = (step: string) => tokens.filter((t) => t.step === step);
  assert.ok(byStep('cal_avg').every((t) => t.status === 'todo'));
  assert.ok([...byStep('solve'), ...byStep('target_apply'), ...byStep('concat')].every((t) => t.status === 'waiting'));
  assert.deepEqual(byStep('concat').map((t) => t.subbands.length).sort(), [10, 2]);
  assert.match(byStep('target_apply')[0]!.command!, /apply --time 2 --freq 8$/);

  for (let i = 0; i < 3; i++) agents.push(startAgent(tp, ['--idle-exit', '20', '--poll', '1', '--workdir', path.join(dir, `agent${i}`)]));
  await waitFor('every token of the run done', async () => {
    const all = await allTokens(tp.pool);
    const failed = all.find((t) => t.status === 'error');
    if (failed) throw new Error(`${failed._id} failed: ${failed.reason}: ${(await tp.pool.db.attachment.get(failed._id, `logs_${failed.attempts}.err`)).toString()}`);
    return all.every((t) => t.status === 'done');
  }, 240_000);

  const done = await allTokens(tp.pool);
  const get = (id: string) => done.find((t) => t._id === id)!;
  for (const t of done.filter((x) => x.pipeline!.needs.length)) {
    // The inputs: the token's own files, then every output of what it needs, in order.
    const ups = t.pipeline!.needs.flatMap((n) => n.tokens.map(get));
    const own = t.pipeline!.own_inputs;
    assert.deepEqual((t.input as { url: string }[]).slice(own).map((i) => i.url), ups.flatMap((u) => u.output.map((o) => o.url)), t._id);
    assert.equal(await releasesOf(tp.pool, t._id), 1, `${t._id} released once`);
  }
  assert.ok(done.every((t) => !(t as Token & { _conflicts?: unknown })._conflicts));

  // Provenance: every token names the run, the definition's hash and the parameters.
  const run = (await tp.pool.db.get(`pipeline:${written.run}`)) as unknown as RunDoc;
  assert.equal(run.definition.sha256.length, 64);
  assert.equal(run.parameters.time_avg, 2);
  assert.ok(done.every((t) => t.pipeline!.definition === run.definition.sha256 && (t.parameters as Record<string, unknown>).time_avg === 2));

  // The science: concat of SB100-109 holds 10 calibrated subbands, 2 channels each after averaging by 8.
  const concat = done.find((t) => t.step === 'concat' && t.subbands.length === 10)!;
  const out = path.join(dir, 'concat-out');
  fs.mkdirSync(out);
  await tar.x({ file: fileURLToPath(concat.output[0]!.url), cwd: out });
  const ms = fs.readdirSync(out);
  assert.deepEqual(ms, ['L862012_SB100-109.concat.MS']);
  const meta = JSON.parse(fs.readFileSync(path.join(out, ms[0]!, 'meta.json'), 'utf8')) as { nchan: number; ntime: number; subbands: number[] };
  assert.deepEqual([meta.nchan, meta.ntime, meta.subbands.length], [20, 8, 10]);

  const status = await cli(tp, ['pipeline', 'status', written.run]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^concat\s+group of 10\s+target_apply\s+2\s+0\s+0\s+0\s+0\s+2\s+0\s+100%$/m);
  const list = await cli(tp, ['pipeline', 'list']);
  assert.match(list.stdout, new RegExp(`${written.run}\\s+linc-demo\\s+L862010,L862012\\s+4\\s+active`));

  for (const a of agents.splice(0)) {
    a.child.kill('SIGTERM');
    assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
  }
  // Rerun from target_apply with a new image: exactly that step and concat run again.
  // An unpacked image, run natively by agents with --runtime none.
  const image = path.join(dir, 'linc-v2');
  fs.mkdirSync(image);
  const before = new Map(done.map((t) => [t._id, t._rev]));
  const rerun = await cli(tp, ['pipeline', 'rerun', written.run, '--from', 'target_apply', '--image', image]);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stdout, /14 tokens of target_apply, concat start again \(12 released at once\)/);
  for (let i = 0; i < 2; i++) agents.push(startAgent(tp, ['--idle-exit', '20', '--poll', '1', '--runtime', 'none', '--workdir', path.join(dir, `rerun${i}`)]));
  await waitFor('the rerun done', async () => {
    const all = await allTokens(tp.pool);
    const failed = all.find((t) => t.status === 'error');
    if (failed) throw new Error(`${failed._id} failed: ${failed.reason}: ${(await tp.pool.db.attachment.get(failed._id, `logs_${failed.attempts}.err`)).toString()}`);
    return all.every((t) => t.status === 'done');
  }, 240_000);
  const after = await allTokens(tp.pool);
  for (const t of after) {
    const again = t.step === 'target_apply' || t.step === 'concat';
    assert.equal(t._rev !== before.get(t._id), again, t._id);
    if (again) assert.equal(t.history.length, 2, t._id);
  }
  const reran = (await tp.pool.db.get(`pipeline:${written.run}`)) as unknown as RunDoc;
  assert.equal(reran.reruns.length, 1);
  assert.equal(reran.reruns[0]!.image!.path, image);
  assert.equal(reran.reruns[0]!.image!.id, null, 'a directory image has no content id; the agents record what they ran');
  assert.ok(after.filter((t) => t.step === 'target_apply').every((t) => t.image === image && (t.pipeline!.previous_output as unknown[]).length === 1));
  for (const a of agents.splice(0)) assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
});
