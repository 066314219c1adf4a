/**
 * Grid submission end to end: the rendered JDL parses as a ClassAd; a stand-in dirac-wms-job-submit
 * records its argv and "uploads" the sandbox; pilots then run the way a WMS runs them (a fresh
 * directory holding only the sandbox files, no node_modules) and drain the pool of the embedded
 * server. No secret may appear in the submit tool's argv, the JDL, or `ps` while pilots run.
 * pilot.sh without any Node.js exits with its documented code and says what to install.
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startTestServer, type TestServer } from './helpers/server.js';
import { runCli } from './helpers/cli.js';
import { addTokens, allTokens, freshPool, tempDir } from './helpers/agent.js';
import { addPilotAccount, allCommandLines, buildBundle, PILOT_SH } from './helpers/pilot.js';
import { waitFor } from './helpers/slurm.js';
import { isSubmission } from '../server/submissions.js';

let server: TestServer;
let dir: string;
let bundle: string;

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('grid');
  bundle = buildBundle(dir);
});
afterAll(async () => {
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

// ---- a small ClassAd (JDL) parser: attribute = value; strings, lists, booleans, numbers, expressions ----

type Value = string | number | boolean | Value[] | { expr: string } | { ad: Record<string, Value> };

function tokenize(src: string): string[] {
  const tokens: string[] = [];
  const re = /\s+|\/\/[^\n]*|#[^\n]*|\/\*[\s\S]*?\*\/|("(?:[^"\\]|\\.)*")|(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_.]*)|(==|!=|>=|<=|=\?=|=!=|&&|\|\||[[\]{}();,=<>!+\-*/%?:])|(.)/gy;
  for (let m = re.exec(src); m && re.lastIndex <= src.length; m = re.exec(src)) {
    if (m[5] !== undefined) throw new Error(`unexpected character ${JSON.stringify(m[5])} at ${m.index}`);
    const t = m[1] ?? m[2] ?? m[3] ?? m[4];
    if (t !== undefined) tokens.push(t);
    if (re.lastIndex === src.length) break;
  }
  return tokens;
}

function parseClassAd(src: string): Record<string, Value> {
  const toks = tokenize(src);
  let i = 0;
  const peek = () => toks[i];
  const next = () => {
    if (i >= toks.length) throw new Error('unexpected end of JDL');
    return toks[i++]!;
  };
  const expect = (t: string) => {
    const got = next();
    if (got !== t) throw new Error(`expected ${t} but found ${got} (token ${i})`);
  };
  const BINARY = [['||'], ['&&'], ['==', '!=', '=?=', '=!='], ['<', '>', '<=', '>='], ['+', '-'], ['*', '/', '%']];

  function ad(): Record<string, Value> {
    expect('[');
    const attrs: Record<string, Value> = {};
    const seen = new Set<string>();
    while (peek() !== ']') {
      const name = next();
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`bad attribute name ${name}`);
      if (seen.has(name.toLowerCase())) throw new Error(`attribute ${name} given twice`);
      seen.add(name.toLowerCase());
      expect('=');
      attrs[name] = expression();
      if (peek() === ';') next();
      else if (peek() !== ']') throw new Error(`expected ; after ${name}`);
    }
    expect(']');
    return attrs;
  }
  // An expression is returned as its value when it is a lone literal, else as {expr: text}.
  function expression(): Value {
    const start = i;
    const value = binary(0);
    return i - start === 1 || isStructured(value) ? value : { expr: toks.slice(start, i).join(' ') };
  }
  function isStructured(v: Value): boolean {
    return Array.isArray(v) || (typeof v === 'object' && v !== null && 'ad' in v);
  }
  function binary(level: number): Value {
    if (level === BINARY.length) return unary();
    let left = binary(level + 1);
    while (peek() !== undefined && BINARY[level]!.includes(peek()!)) {
      next();
      binary(level + 1);
      left = { expr: '' };
    }
    if (level === 0 && peek() === '?') {
      next();
      binary(0);
      expect(':');
      binary(0);
      left = { expr: '' };
    }
    return left;
  }
  function unary(): Value {
    if (peek() === '!' || peek() === '-' || peek() === '+') {
      next();
      unary();
      return { expr: '' };
    }
    return primary();
  }
  function primary(): Value {
    const t = next();
    if (t.startsWith('"')) return JSON.parse(t) as string;
    if (/^\d/.test(t)) return Number(t);
    if (/^true$/i.test(t)) return true;
    if (/^false$/i.test(t)) return false;
    if (t === '(') {
      binary(0);
      expect(')');
      return { expr: '' };
    }
    if (t === '{') {
      const items: Value[] = [];
      while (peek() !== '}') {
        items.push(expression());
        if (peek() === ',') next();
        else if (peek() !== '}') throw new Error('expected , or } in a list');
      }
      expect('}');
      return items;
    }
    if (t === '[') {
      i--;
      return { ad: ad() };
    }
    if (/^[A-Za-z_]/.test(t)) {
      if (peek() === '(') {
        // function call
        next();
        while (peek() !== ')') {
          binary(0);
          if (peek() === ',') next();
        }
        expect(')');
      }
      return { expr: t };
    }
    throw new Error(`unexpected ${t}`);
  }
  const result = ad();
  if (i !== toks.length) throw new Error(`text after the closing ]: ${toks.slice(i).join(' ')}`);
  return result;
}

test('the ClassAd check itself accepts JDL and refuses broken JDL', () => {
  const ok = parseClassAd('[ A = "x\\"y"; B = {1, "two", true}; C = other.X >= 5 && !(Y == "z"); D = false; E = [ F = 1 ]; ]');
  assert.equal(ok.A, 'x"y');
  assert.deepEqual(ok.B, [1, 'two', true]);
  assert.equal(ok.D, false);
  assert.ok(typeof ok.C === 'object' && 'expr' in ok.C);
  for (const bad of ['[ A = "x" B = 1; ]', '[ A = ; ]', '[ A = {1, 2; ]', '[ A = 1; a = 2; ]', '[ A = "unterminated ]', '[ A = 1; ] trailing']) {
    assert.throws(() => parseClassAd(bad), Error, bad);
  }
});

// ---- fixtures ----

async function gridPool() {
  const tp = await freshPool(server);
  const account = await addPilotAccount(tp, dir);
  return { tp, account };
}

function standInSubmitter(name: string, output: string): { bin: string; record: string } {
  const bin = fs.mkdtempSync(path.join(dir, 'bin-'));
  const record = fs.mkdtempSync(path.join(dir, 'wms-'));
  // Records argv and "uploads" the sandbox (the JDL's directory), as a WMS client would.
  fs.writeFileSync(
    path.join(bin, name),
    `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > ${record}/argv\njdl=""\nfor a in "$@"; do jdl=$a; done\nmkdir -p ${record}/upload && cp -p "$(dirname "$jdl")"/* ${record}/upload/\nprintf '%s\\n' ${JSON.stringify(output)}\n`,
    { mode: 0o755 },
  );
  return { bin, record };
}

function gridArgs(backend: string, account: { file: string }, tp: { dbUrl: string; credentials: string }, extra: string[] = []): string[] {
  return ['submit', 'grid', '--backend', backend, '--pilot-credentials', account.file, '--db', tp.dbUrl, '--credentials', tp.credentials, '--bundle', bundle, ...extra];
}

// ---- tests ----

test('dry run: the JDL of both backends parses as a ClassAd with the pilot, the bundle and the credentials in the sandbox', async () => {
  const { tp, account } = await gridPool();
  for (const backend of ['dirac', 'glite']) {
    const res = await runCli([...gridArgs(backend, account, tp, ['--count', '7', '--cpus', '4', '--time', '24:00:00', '--vo', 'lofar', '--dry-run', '--json']), '--', '--step', 'cal1']);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as { jdl: string; command: string[]; dry_run: boolean };
    assert.equal(out.dry_run, true);
    const ad = parseClassAd(out.jdl);
    assert.equal(ad.Executable, 'pilot.sh');
    assert.equal(ad.JobType, 'Parametric');
    assert.equal(ad.Parameters, 7);
    assert.equal(ad.ShallowRetryCount, 0);
    assert.equal(ad.CPUNumber, 4);
    assert.equal(ad.SmpGranularity, 4);
    assert.equal(ad.WholeNodes, false);
    const sandbox = ad.InputSandbox as string[];
    assert.deepEqual(sandbox.map((f) => path.basename(f)), ['pilot.sh', 'tokenpool-agent.mjs', 'tokenpool-credentials.json']);
    assert.deepEqual(ad.OutputSandbox, ['pilot.out', 'pilot.err']);
    assert.match(String(ad.Arguments), /--max-time \d+ --idle-exit 60 --step cal1/);
    if (backend === 'glite') {
      assert.ok(typeof ad.Requirements === 'object' && 'expr' in ad.Requirements, 'Requirements is an expression');
      assert.match((ad.Requirements as { expr: string }).expr, /GlueCEPolicyMaxWallClockTime >= 1440/);
      assert.equal(ad.VirtualOrganisation, 'lofar');
      assert.deepEqual(out.command.slice(0, 2), ['glite-wms-job-submit', '-d']);
    } else {
      assert.equal(ad.NumberOfProcessors, 4);
      assert.equal(ad.CPUTime, 86400);
      assert.equal(out.command[0], 'dirac-wms-job-submit');
    }
    assert.ok(!res.stdout.includes(account.password) && !res.stderr.includes(account.password), 'no password in the dry run');
    // The temporary sandbox of a dry run is gone.
    assert.equal(fs.existsSync(path.dirname(sandbox[0]!)), false);
  }
});

test('submit through a stand-in dirac-wms-job-submit, then run pilots as a WMS would: the pool drains, no secret in argv, JDL or ps', async () => {
  const { tp, account } = await gridPool();
  const shared = path.join(dir, 'grid-runs.txt');
  await addTokens(
    tp.pool,
    Array.from({ length: 6 }, (_, i) => ({ obsid: 'L200', step: 'cal', subbands: [i], command: `sleep 1; echo "$TOKEN_ID" >> ${shared}` })),
  );
  const wms = standInSubmitter('dirac-wms-job-submit', 'JobID = [101, 102]');
  const res = await runCli([...gridArgs('dirac', account, tp, ['--count', '2', '--time', '1:00:00', '--idle-exit', '3']), '--', '--jitter', '0', '--poll', '1'], {
    env: { PATH: `${wms.bin}:${process.env.PATH}` },
  });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /submitted 2 pilots through dirac: 101 102/);

  // What the submit tool saw: argv and the uploaded sandbox.
  const argv = fs.readFileSync(path.join(wms.record, 'argv'), 'utf8');
  assert.ok(!argv.includes(account.password), 'no password in the submit tool argv');
  const upload = path.join(wms.record, 'upload');
  const jdl = fs.readFileSync(path.join(upload, 'pilot.jdl'), 'utf8');
  assert.ok(!jdl.includes(account.password) && !jdl.includes(account.name), 'no account in the JDL');
  assert.ok(!fs.readFileSync(path.join(upload, 'pilot.sh'), 'utf8').includes(account.password));
  assert.equal(fs.statSync(path.join(upload, 'tokenpool-credentials.json')).mode & 0o777, 0o600);
  const ad = parseClassAd(jdl);

  // The submission is recorded in the pool.
  const records = (await tp.pool.db.list({ include_docs: true })).rows.map((r) => r.doc as unknown).filter(isSubmission);
  assert.equal(records.length, 1);
  assert.equal(records[0]!.backend, 'dirac');
  assert.deepEqual(records[0]!.job_ids, ['101', '102']);
  assert.equal(records[0]!.count, 2);
  assert.ok(!JSON.stringify(records[0]).includes(account.password));

  // The WMS: each pilot in a fresh directory with only the sandbox files; the executable runs with Arguments.
  const pilots = ['101', '102'].map((jobId) => {
    const work = fs.mkdtempSync(path.join(dir, `wn-${jobId}-`));
    for (const f of ad.InputSandbox as string[]) fs.copyFileSync(path.join(upload, path.basename(f)), path.join(work, path.basename(f)));
    fs.chmodSync(path.join(work, 'pilot.sh'), 0o755);
    const env = { PATH: process.env.PATH!, HOME: work, DIRACJOBID: jobId, TMPDIR: work };
    const child = spawn('/bin/sh', ['-c', `./pilot.sh ${String(ad.Arguments)} > pilot.out 2> pilot.err`], { cwd: work, env, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    return { work, child, exited };
  });
  try {
    // While they run, nothing any user can see in ps carries the password.
    await waitFor(() => fs.existsSync(shared), { timeoutMs: 120_000, what: 'a pilot to run a step' });
    const ps = allCommandLines();
    assert.match(ps, /tokenpool-agent\.mjs agent/);
    assert.ok(!ps.includes(account.password), 'no password in ps');
    const codes = await Promise.all(pilots.map((p) => p.exited));
    for (const [i, code] of codes.entries()) {
      assert.equal(code, 0, fs.readFileSync(path.join(pilots[i]!.work, 'pilot.err'), 'utf8').slice(-3000));
      // No node_modules anywhere near the pilot; its scratch directory is gone.
      assert.deepEqual(fs.readdirSync(pilots[i]!.work).sort(), ['pilot.err', 'pilot.out', 'pilot.sh', 'tokenpool-agent.mjs', 'tokenpool-credentials.json']);
      const log = fs.readFileSync(path.join(pilots[i]!.work, 'pilot.err'), 'utf8');
      assert.ok(!log.includes(account.password), 'no password in the pilot log');
    }
  } finally {
    for (const p of pilots) if (p.child.exitCode === null) p.child.kill('SIGKILL');
  }
  const lines = fs.readFileSync(shared, 'utf8').trim().split('\n');
  assert.equal(lines.length, 6, 'every token ran once');
  assert.equal(new Set(lines).size, 6);
  for (const t of await allTokens(tp.pool)) {
    assert.equal(t.status, 'done', t._id);
    assert.ok(['101', '102'].includes(String(t.dirac_job_id)), `${t._id} carries its DIRAC job id (${String(t.dirac_job_id)})`);
  }
});

test('a privileged or role-less pilot account is refused before anything is submitted', async () => {
  const tp = await freshPool(server);
  const manager = await addPilotAccount(tp, dir, 'manager');
  const viewer = await addPilotAccount(tp, dir, 'viewer');
  const wms = standInSubmitter('dirac-wms-job-submit', 'JobID = 1');
  for (const [account, message] of [
    [manager, /must not hold it/],
    [viewer, /lacks the role tokenpool_agent/],
  ] as const) {
    const res = await runCli(gridArgs('dirac', account, tp, ['--count', '1']), { env: { PATH: `${wms.bin}:${process.env.PATH}` } });
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, message);
    assert.ok(!res.stderr.includes(account.password));
  }
  assert.equal(fs.existsSync(path.join(wms.record, 'argv')), false, 'the submit tool never ran');

  const loose = path.join(dir, 'loose.json');
  fs.writeFileSync(loose, fs.readFileSync(manager.file), { mode: 0o644 });
  fs.chmodSync(loose, 0o644);
  const res = await runCli(gridArgs('dirac', { file: loose }, tp, ['--dry-run']));
  assert.equal(res.code, 2);
  assert.match(res.stderr, /readable by others/);
});

test('pilot.sh with no Node.js anywhere exits 69 and says what to install', () => {
  const bin = fs.mkdtempSync(path.join(dir, 'nonode-'));
  for (const tool of ['dirname', 'basename', 'mktemp', 'rm']) {
    const found = ['/usr/bin', '/bin'].map((d) => path.join(d, tool)).find((p) => fs.existsSync(p));
    if (found) fs.symlinkSync(found, path.join(bin, tool));
  }
  const oldNode = path.join(bin, 'old-node');
  fs.writeFileSync(oldNode, '#!/bin/sh\nprintf 18\n', { mode: 0o755 });
  const res = spawnSyncText('/bin/sh', [PILOT_SH], {
    PATH: bin,
    TOKENPOOL_NODE: oldNode,
    TOKENPOOL_NODE_SEARCH: `${path.join(dir, 'no-cvmfs')}/*/bin/node:/nonexistent/node`,
  });
  assert.equal(res.code, 69, res.stderr);
  assert.match(res.stderr, /no Node\.js >= 20 found/);
  assert.match(res.stderr, /Install Node\.js 20 or newer/);
  assert.match(res.stderr, /TOKENPOOL_NODE/);
});

test('pilot.sh finds Node.js through the CVMFS search list and runs the bundle from a bare directory', () => {
  const bin = fs.mkdtempSync(path.join(dir, 'cvmfs-bin-'));
  for (const tool of ['dirname', 'basename', 'mktemp', 'rm']) {
    const found = ['/usr/bin', '/bin'].map((d) => path.join(d, tool)).find((p) => fs.existsSync(p));
    if (found) fs.symlinkSync(found, path.join(bin, tool));
  }
  const fakeCvmfs = path.join(dir, 'cvmfs', 'nodejs', '20.x', 'bin');
  fs.mkdirSync(fakeCvmfs, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(fakeCvmfs, 'node'));
  const work = fs.mkdtempSync(path.join(dir, 'bare-'));
  fs.copyFileSync(PILOT_SH, path.join(work, 'pilot.sh'));
  fs.copyFileSync(bundle, path.join(work, 'tokenpool-agent.mjs'));
  const res = spawnSyncText('/bin/sh', [path.join(work, 'pilot.sh'), '--help'], {
    PATH: bin,
    TMPDIR: work,
    TOKENPOOL_NODE_SEARCH: `/nonexistent/node:${path.join(dir, 'cvmfs')}/nodejs/*/bin/node`,
  }, work);
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stdout, /Claim tokens and run their steps/);
  assert.match(res.stderr, /cvmfs\/nodejs\/20\.x\/bin\/node/);
  assert.deepEqual(fs.readdirSync(work).sort(), ['pilot.sh', 'tokenpool-agent.mjs'], 'the scratch directory was removed');
});

function spawnSyncText(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { env, cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
