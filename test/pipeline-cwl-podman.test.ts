/**
 * A CWL step in a real container: cwltool --podman runs a CommandLineTool in the step's image (an
 * unpacked busybox tree the agent imports into rootless podman), proven by a file only the image
 * has; the output object's file is staged out and recorded on the token.
 *
 * cwltool runs podman with --userns=keep-id, which podman allows only rootless: the agent runs as an
 * unprivileged user (the test's own, or as root a dedicated user with subordinate ids, made once).
 */
import { afterAll, beforeAll, test } from 'vitest';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as tar from 'tar';
import { startTestServer, type TestServer } from './helpers/server.js';
import { allTokens, freshPool, startAgent, tempDir, waitFor, type TestPool } from './helpers/agent.js';
import { CLI, runCli } from './helpers/cli.js';
import { RUN_MARK } from './setup/leftovers.js';

const USER = 'tokenpool-cwl';
const MARKER = '/etc/tokenpool-image-marker';
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p)) ?? 'busybox';

interface Account {
  uid: number;
  gid: number;
  home: string;
}

let server: TestServer;
let dir: string;
let account: Account;
let agent: ChildProcess | null = null;

beforeAll(async () => {
  server = await startTestServer();
  dir = tempDir('cwl-podman');
  fs.chmodSync(dir, 0o755);
  account = agentAccount();
  image(path.join(dir, 'rootfs'));
  // podman's defaults as this host needs them: runc (crun refuses hybrid cgroup hierarchies), and
  // limits no higher than a process may set without CAP_SYS_RESOURCE (a container's sandbox).
  fs.writeFileSync(path.join(dir, 'containers.conf'), '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n');
});
afterAll(async () => {
  agent?.kill('SIGKILL');
  // Rootless podman keeps a pause process per account; migrate ends it.
  if (account) asAccount('podman', ['system', 'migrate']);
  await server?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The unprivileged account the agent runs as. */
function agentAccount(): Account {
  if (process.getuid!() !== 0) return { uid: process.getuid!(), gid: process.getgid!(), home: os.homedir() };
  if (!passwdEntry(USER)) {
    // useradd gives a regular user its subordinate uid and gid ranges (/etc/subuid, /etc/subgid).
    const made = spawnSync('useradd', ['--create-home', '--shell', '/usr/sbin/nologin', '--comment', 'tokenpool tests, rootless podman', USER], { encoding: 'utf8' });
    assert.equal(made.status, 0, `useradd ${USER}: ${made.stderr}`);
  }
  const entry = passwdEntry(USER)!;
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    assert.ok(fs.readFileSync(f, 'utf8').split('\n').some((l) => l.startsWith(`${USER}:`)), `${USER} has no range in ${f}: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${USER}`);
  }
  return entry;
}

function passwdEntry(name: string): Account | undefined {
  const fields = fs.readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${name}:`))?.split(':');
  return fields && { uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5]! };
}

/** The environment of a login of the agent's account; CONTAINERS_CONF for this host's podman; the run's mark (leftovers.ts). */
function accountEnv(): NodeJS.ProcessEnv {
  const name = process.getuid!() === 0 ? USER : os.userInfo().username;
  return { PATH: process.env.PATH, HOME: account.home, USER: name, LOGNAME: name, CONTAINERS_CONF: path.join(dir, 'containers.conf'), TOKENPOOL_LOG_JSON: '1', [RUN_MARK]: process.env[RUN_MARK] };
}

function asAccount(file: string, args: string[]) {
  return spawnSync(file, args, { uid: account.uid, gid: account.gid, env: accountEnv(), cwd: dir, encoding: 'utf8', timeout: 60_000 });
}

/** An unpacked image: busybox and its applets, and a marker file the host does not have. */
function image(root: string): void {
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(root, 'etc'));
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'cat']) fs.symlinkSync('busybox', path.join(root, 'bin', applet));
  fs.writeFileSync(path.join(root, MARKER), 'written inside the image\n');
}

/** A pool with a one-step run whose CWL tool cats the image's marker and the staged inputs. */
async function cwlRun(): Promise<TestPool> {
  const tp = await freshPool(server);
  fs.writeFileSync(
    path.join(dir, 'marker-cat.cwl'),
    `cwlVersion: v1.2
class: CommandLineTool
baseCommand: [cat, ${MARKER}]
inputs:
  files: {type: 'File[]', inputBinding: {position: 1}}
stdout: joined.txt
outputs:
  joined: {type: stdout}
`,
  );
  fs.writeFileSync(
    path.join(dir, 'podman.yaml'),
    `name: cwl-podman
observations: [obs]
parameters:
  results: {type: string}
steps:
  - name: cat
    observation: obs
    per: observation
    surls: true
    image: ${path.join(dir, 'rootfs')}
    cwl: {workflow: marker-cat.cwl, inputs: files, container: node}
    results: "{{results}}/\${TOKEN_ID}.tar"
`,
  );
  const lines: string[] = [];
  for (let sb = 0; sb < 2; sb++) {
    const f = path.join(dir, `L401_SB00${sb}_uv.MS_0000abcd.dat`);
    fs.writeFileSync(f, `subband ${sb}\n`);
    lines.push(pathToFileURL(f).href);
  }
  fs.writeFileSync(path.join(dir, 'L401.surls'), lines.join('\n') + '\n');
  const results = path.join(dir, 'results');
  const run = await runCli(['pipeline', 'run', path.join(dir, 'podman.yaml'), '--obs', 'obs=L401', '--surls', `obs=${path.join(dir, 'L401.surls')}`, '--set', `results=${pathToFileURL(results).href}`, '--db', tp.dbUrl, '--credentials', tp.credentials]);
  assert.equal(run.code, 0, run.stderr);
  return tp;
}

test('a CWL CommandLineTool runs with cwltool --podman inside the step image; its output is staged out and recorded', async () => {
  assert.ok(!fs.existsSync(MARKER), `${MARKER} must exist only in the image`);
  const tp = await cwlRun();
  // Everything the agent touches belongs to its account (the credentials file stays 0600).
  fs.copyFileSync(tp.credentials, path.join(dir, 'credentials.json'));
  fs.chmodSync(path.join(dir, 'credentials.json'), 0o600);
  spawnSync('chown', ['-R', `${account.uid}:${account.gid}`, dir]);
  let logs = '';
  agent = spawn(process.execPath, [...CLI, 'agent', '--db', tp.dbUrl, '--credentials', path.join(dir, 'credentials.json'), '--runtime', 'podman', '--jitter', '0', '--idle-exit', '3', '--poll', '1', '--workdir', path.join(dir, 'agent')], {
    uid: account.uid,
    gid: account.gid,
    cwd: dir,
    env: accountEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  agent.stdout!.on('data', (c: Buffer) => (logs += c.toString()));
  agent.stderr!.on('data', (c: Buffer) => (logs += c.toString()));
  const exited = new Promise<number | null>((resolve) => agent!.on('exit', resolve));

  const [token] = await waitFor('the CWL token done', async () => {
    const all = await allTokens(tp.pool);
    const failed = all.find((t) => t.status === 'error');
    if (failed) throw new Error(`${failed._id}: ${failed.reason}: ${(await tp.pool.db.attachment.get(failed._id, `logs_${failed.attempts}.err`)).toString().slice(-3000)}`);
    return all.length === 1 && all[0]!.status === 'done' && all;
  }, 240_000);
  assert.equal(await exited, 0, logs.slice(-3000));

  // The podman image the agent made, by a name from the tree's digest, and what ran the step.
  const software = token!.software as { runtime: string; image: { path: string; podman: string } };
  assert.equal(software.runtime, 'podman');
  assert.match(software.image.podman, /^localhost\/tokenpool-rootfs:[0-9a-f]{16}$/);
  assert.equal(asAccount('podman', ['image', 'exists', software.image.podman]).status, 0, 'the image is in the account\'s podman storage');

  const recorded = token!.cwl_output as Record<string, { class: string; path: string; size: number; checksum: string }>;
  assert.deepEqual(Object.keys(recorded), ['joined']);
  assert.equal(recorded.joined!.path, 'joined.txt');
  assert.match(recorded.joined!.checksum, /^sha1\$[0-9a-f]{40}$/);
  const out = path.join(dir, 'unpacked');
  fs.mkdirSync(out);
  await tar.x({ file: fileURLToPath(token!.output[0]!.url), cwd: out });
  assert.deepEqual(fs.readdirSync(out), ['joined.txt']);
  // The image's marker first: cat ran inside the container, on the staged inputs mounted there.
  assert.equal(fs.readFileSync(path.join(out, 'joined.txt'), 'utf8'), 'written inside the image\nsubband 0\nsubband 1\n');
  assert.equal(recorded.joined!.size, fs.statSync(path.join(out, 'joined.txt')).size);

  assert.equal(asAccount('podman', ['image', 'rm', software.image.podman]).status, 0);
});

test.runIf(process.getuid!() === 0)('as root, the agent refuses podman CWL steps with why, and gives the token back untouched', async () => {
  const tp = await cwlRun();
  const root = startAgent(tp, ['--runtime', 'podman', '--idle-exit', '3', '--poll', '1', '--workdir', path.join(dir, 'root-agent')], { CONTAINERS_CONF: path.join(dir, 'containers.conf') });
  const { code } = await root.exited;
  assert.equal(code, 4, root.logs().slice(-2000));
  assert.match(root.logs(), /no runtime for the CWL step: cwltool --podman needs rootless podman/);
  const [token] = await allTokens(tp.pool);
  assert.equal(token!.status, 'todo');
  assert.equal(token!.attempts, 0);
});
