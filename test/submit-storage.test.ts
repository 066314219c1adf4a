/**
 * Storage credentials for pilots: Slurm scripts name the macaroons and bearer token files (never
 * their contents), grid sandboxes carry 0600 copies that pilot.sh finds; open files are refused;
 * the submitter's BEARER_TOKEN never reaches a batch client.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, test } from 'vitest';
import { stageGridSubmission, type GridArgs } from '../scripts/commands/submit-grid.js';
import { batchClientEnv } from '../scripts/commands/submit-credentials.js';
import { renderSbatch, slurmPlan, type SlurmArgs } from '../scripts/commands/submit-slurm.js';
import { InputError } from '../server/errors.js';

const MACAROON = 'MDAxY2xvY2F0aW9uIHRlc3Qtc2UKMDAyZmlkZW50aWZpZXIgc2VjcmV0LW1hY2Fyb29uLWNvbnRlbnQ';
const BEARER = 'eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6InN0b3JhZ2UucmVhZDovIn0.c2VjcmV0LWJlYXJlci10b2tlbg';
let dir: string;
let files: { macaroons: string; bearer: string; bundle: string };
const creds = () => ({ file: path.join(dir, 'pilot.json'), url: 'http://127.0.0.1:5984/lofar', name: 'pilot' });

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-submit-storage-'));
  files = { macaroons: path.join(dir, 'macaroons.json'), bearer: path.join(dir, 'bt'), bundle: path.join(dir, 'tokenpool-agent.mjs') };
  fs.writeFileSync(files.macaroons, JSON.stringify({ macaroons: [{ site: 'SURF', hosts: [], content: MACAROON }] }), { mode: 0o600 });
  fs.writeFileSync(files.bearer, BEARER + '\n', { mode: 0o600 });
  fs.writeFileSync(creds().file, JSON.stringify({ url: creds().url, name: 'pilot', password: 'pilot-password-123' }), { mode: 0o600 });
  fs.writeFileSync(files.bundle, '// agent\n');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const common = () => ({ time: '1:00:00', cpus: 1, idleExit: 60, bundle: files.bundle, dryRun: true, _: [], macaroons: files.macaroons, bearerTokenFile: files.bearer });

test('Slurm: the script names the files; their contents appear nowhere in it or in the record', () => {
  const args = { ...common(), signalGrace: 180, logDir: dir, auto: false, once: false, maxQueued: 10, interval: 60 } as unknown as SlurmArgs;
  const plan = slurmPlan(args, creds(), [], 'lofar');
  const script = renderSbatch(plan, 2);
  assert.match(script, new RegExp(`^export TOKENPOOL_MACAROONS='?${files.macaroons}'?$`, 'm'));
  assert.match(script, new RegExp(`^export BEARER_TOKEN_FILE='?${files.bearer}'?$`, 'm'));
  for (const text of [script, JSON.stringify(plan.options)]) assert.ok(!text.includes(MACAROON) && !text.includes(BEARER));

  fs.chmodSync(files.bearer, 0o644);
  assert.throws(() => slurmPlan(args, creds(), [], 'lofar'), (e: unknown) => e instanceof InputError && /readable by others/.test(e.message));
  fs.chmodSync(files.bearer, 0o600);
});

test('grid: 0600 copies in the sandbox, listed in the JDL by name; pilot.sh exports their paths', () => {
  const sandbox = path.join(dir, 'sandbox');
  const args = { ...common(), backend: 'dirac', wholeNodes: false, sandboxDir: sandbox } as unknown as GridArgs;
  const plan = stageGridSubmission(args, creds(), [], sandbox, 3);
  for (const name of ['tokenpool-macaroons.json', 'tokenpool-bearer-token']) {
    assert.equal(fs.statSync(path.join(sandbox, name)).mode & 0o777, 0o600);
    assert.ok(plan.jdl.includes(name));
  }
  assert.ok(!plan.jdl.includes(MACAROON) && !plan.jdl.includes(BEARER) && !JSON.stringify(plan.options).includes(BEARER));

  // pilot.sh in the sandbox, with a stand-in node that prints what the agent would see.
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.writeFileSync(path.join(bin, 'node'), '#!/bin/sh\nif [ "$1" = "-e" ]; then echo 20; exit 0; fi\necho "macaroons=$TOKENPOOL_MACAROONS bearer=$BEARER_TOKEN_FILE"\n', { mode: 0o755 });
  const out = execFileSync('/bin/sh', [path.join(sandbox, 'pilot.sh')], { cwd: sandbox, env: { PATH: `${bin}:/usr/bin:/bin`, TOKENPOOL_NODE: path.join(bin, 'node'), HOME: dir }, encoding: 'utf8' });
  assert.match(out, new RegExp(`macaroons=${sandbox}/tokenpool-macaroons.json bearer=${sandbox}/tokenpool-bearer-token`));
});

test('the submitter\'s BEARER_TOKEN is not handed to batch clients', () => {
  const env = batchClientEnv({ PATH: '/usr/bin', BEARER_TOKEN: BEARER, BEARER_TOKEN_FILE: files.bearer });
  assert.equal(env.BEARER_TOKEN, undefined);
  assert.equal(env.BEARER_TOKEN_FILE, files.bearer);
});
