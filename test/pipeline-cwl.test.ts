/** A CWL step for real: cwltool runs the shipped Workflow on staged files; its output object's files are staged out and recorded. */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { startTestServer, type TestServer } from './helpers/server.js';
import { allTokens, freshPool, killAgent, startAgent, tempDir, waitFor, type AgentProcess } from './helpers/agent.js';
import { runCli } from './helpers/cli.js';
import { PROJECT_ROOT } from '../server/own-module.js';

let server: TestServer;
let dir: string;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('cwl');
});
afterAll(async () => {
  agents.forEach(killAgent);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a CWL Workflow step runs with cwltool in the scratch directory; the files of its output object are staged out and recorded', async () => {
  const tp = await freshPool(server);
  const lines: string[] = [];
  for (let sb = 0; sb < 6; sb++) {
    const f = path.join(dir, `L400_SB${String(sb).padStart(3, '0')}_uv.MS_0000abcd.dat`);
    fs.writeFileSync(f, `subband ${sb}\n`);
    lines.push(pathToFileURL(f).href);
  }
  fs.writeFileSync(path.join(dir, 'L400.surls'), lines.join('\n') + '\n');
  const results = pathToFileURL(path.join(dir, 'results')).href;
  const run = await runCli(['pipeline', 'run', path.join(PROJECT_ROOT, 'docs', 'pipelines', 'cwl-demo.yaml'), '--obs', 'obs=L400', '--surls', `obs=${path.join(dir, 'L400.surls')}`, '--set', `results=${results}`, '--set', 'label=sb', '--db', tp.dbUrl, '--credentials', tp.credentials]);
  assert.equal(run.code, 0, run.stderr);

  agents.push(startAgent(tp, ['--idle-exit', '3', '--poll', '1', '--workdir', path.join(dir, 'agent')]));
  await waitFor('both CWL tokens done', async () => {
    const all = await allTokens(tp.pool);
    const failed = all.find((t) => t.status === 'error');
    if (failed) throw new Error(`${failed._id}: ${failed.reason}: ${(await tp.pool.db.attachment.get(failed._id, `logs_${failed.attempts}.err`)).toString().slice(-3000)}`);
    return all.length === 2 && all.every((t) => t.status === 'done');
  }, 150_000);

  const first = (await allTokens(tp.pool)).find((t) => t.subbands[0] === 0)!;
  assert.deepEqual(first.subbands, [0, 1, 2, 3]);
  const recorded = first.cwl_output as Record<string, { class: string; path: string; size: number; checksum: string }>;
  assert.deepEqual(Object.keys(recorded).sort(), ['count', 'joined']);
  assert.equal(recorded.joined!.path, 'joined.txt');
  assert.equal(recorded.count!.path, 'sb.count');
  assert.match(recorded.joined!.checksum, /^sha1\$[0-9a-f]{40}$/);

  // The staged-out result holds exactly the output object's files.
  const out = path.join(dir, 'unpacked');
  fs.mkdirSync(out);
  await tar.x({ file: fileURLToPath(first.output[0]!.url), cwd: out });
  assert.deepEqual(fs.readdirSync(out).sort(), ['joined.txt', 'sb.count']);
  assert.equal(fs.readFileSync(path.join(out, 'joined.txt'), 'utf8'), 'subband 0\nsubband 1\nsubband 2\nsubband 3\n');
  assert.match(fs.readFileSync(path.join(out, 'sb.count'), 'utf8'), /^4 /);
  assert.equal(recorded.joined!.size, fs.statSync(path.join(out, 'joined.txt')).size);
  for (const a of agents.splice(0)) assert.equal((await a.exited).code, 0, a.logs().slice(-2000));
});
