/**
 * Software images on a stand-in CVMFS (--cvmfs-root): lookup and "image not found", a step run
 * inside bubblewrap from an unpacked busybox root file system, the apptainer command line (a
 * recording stand-in: apptainer is not packaged here), native runs with an init script, and the
 * node-local cache shared by two agents in separate processes.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, test } from 'vitest';
import { createWorkerNode, type WorkerNodeArgs } from '../agent/node/index.js';
import { PhaseError, type PhaseContext } from '../agent/phases.js';
import { attemptParts } from './helpers/phase.js';
import { createLogger } from '../server/log.js';
import { ownModule } from '../server/own-module.js';
import { EXIT, newToken, type NewToken } from '../server/token.js';

const NODE_MODULE = ownModule('../agent/node/index', import.meta.url);
const LOG_MODULE = ownModule('../server/log', import.meta.url);
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p)) ?? 'busybox';
const REPO = 'softdrive.example.org';

let dir: string;
let cvmfs: string;
let standIns: string;
const savedPath = process.env.PATH;
const silent = createLogger('test', { level: 'silent', pretty: false });

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-node-image-'));
  cvmfs = path.join(dir, 'cvmfs');
  const lofar = path.join(cvmfs, REPO, 'lofar');
  fs.mkdirSync(lofar, { recursive: true });
  // An unpacked image: busybox and its applets, and a marker file the host does not have.
  const rootfs = path.join(lofar, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'etc'));
  fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
  fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of ['sh', 'cat', 'echo', 'pwd', 'ls', 'test']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  fs.writeFileSync(path.join(rootfs, 'etc', 'image-marker'), 'lofar-rootfs-2024.1\n');
  fs.symlinkSync('bin', path.join(rootfs, 'sbin'));
  // A native software tree with an init script.
  fs.mkdirSync(path.join(lofar, 'native'));
  fs.writeFileSync(path.join(lofar, 'native', 'init.sh'), 'export LOFARROOT=/opt/lofar-from-init\n');
  // .sif files (content is irrelevant to the stand-in apptainer).
  fs.writeFileSync(path.join(lofar, 'lofar.sif'), Buffer.alloc(24 << 20, 1));
  fs.writeFileSync(path.join(lofar, 'other.sif'), Buffer.alloc(12 << 20, 2));
  fs.writeFileSync(path.join(lofar, 'third.sif'), Buffer.alloc(12 << 20, 3));
  // A recording apptainer: writes its arguments, then runs the command after the image natively.
  standIns = path.join(dir, 'bin');
  fs.mkdirSync(standIns);
  fs.writeFileSync(
    path.join(standIns, 'apptainer'),
    '#!/bin/sh\nprintf "%s\\n" "$@" > "$APPTAINER_RECORD"\nwhile [ "$#" -gt 0 ] && [ "$1" != "/bin/sh" ]; do shift; done\nexec "$@"\n',
    { mode: 0o755 },
  );
});

afterAll(() => {
  process.env.PATH = savedPath;
  fs.rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function context(spec: Partial<NewToken> = {}): PhaseContext {
  const scratchDir = path.join(dir, `scratch-${++n}`);
  fs.mkdirSync(scratchDir, { recursive: true });
  const token = newToken({ obsid: 'L229507', step: 'cal1', subbands: [n], ...spec });
  return {
    token,
    ...attemptParts(token),
    scratchDir,
    inputDir: path.join(scratchDir, 'input'),
    outputDir: path.join(scratchDir, 'output'),
    env: {},
    log: silent,
    signal: new AbortController().signal,
  };
}

const node = (args: Partial<WorkerNodeArgs>) => createWorkerNode({ cvmfsRoot: cvmfs, cvmfsTimeout: '20s', ...args }, silent);

function run(wrapped: { file: string; args: string[] }, ctx: PhaseContext, env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(wrapped.file, wrapped.args, { cwd: ctx.scratchDir, env: { ...process.env, ...ctx.env, ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('image lookup', () => {
  test('missing image: preflight fails with "image not found: <path>"', async () => {
    const image = `/cvmfs/${REPO}/lofar/missing.sif`;
    await assert.rejects(node({ image }).preflight(), (err: unknown) => {
      assert.ok(err instanceof PhaseError);
      assert.equal(err.reason, `image not found: ${image}`);
      assert.equal(err.tokenExitCode, EXIT.imageNotFound);
      return true;
    });
  });

  test('repository not mounted: said so', async () => {
    await assert.rejects(node({ image: '/cvmfs/sw.other.org/lofar.sif' }).preflight(), /image not found: \/cvmfs\/sw\.other\.org\/lofar\.sif: CVMFS repository sw\.other\.org is not mounted/);
  });

  test("a token's own missing image fails its stage-in", async () => {
    const image = `/cvmfs/${REPO}/lofar/v9.sif`;
    await assert.rejects(node({ runtime: 'auto' }).stageIn(context({ image })), (err: unknown) => err instanceof PhaseError && err.reason === `image not found: ${image}` && !err.retryable);
  });
});

describe('runtimes', () => {
  test('bwrap: the step runs inside the unpacked image with the scratch dir bound', async () => {
    const image = `/cvmfs/${REPO}/lofar/rootfs`;
    const wn = node({ image, runtime: 'auto' });
    await wn.preflight();
    const ctx = context();
    await wn.stageIn(ctx);
    const wrapped = wn.wrapCommand(ctx, 'cat /etc/image-marker > marker.txt; pwd > pwd.txt; if test -e /usr/bin/env; then echo host; else echo isolated; fi');
    assert.match(wrapped.file, /bwrap$/);
    const r = run(wrapped, ctx);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'isolated');
    assert.equal(fs.readFileSync(path.join(ctx.scratchDir, 'marker.txt'), 'utf8'), 'lofar-rootfs-2024.1\n');
    assert.equal(fs.readFileSync(path.join(ctx.scratchDir, 'pwd.txt'), 'utf8').trim(), ctx.scratchDir);
    const facts = (await wn.provenance(ctx)).software as Record<string, unknown>;
    assert.equal(facts.runtime, 'bwrap');
    assert.deepEqual({ ...(facts.image as object), mtime: undefined, size: undefined }, {
      path: image,
      located: path.join(cvmfs, REPO, 'lofar', 'rootfs'),
      kind: 'dir',
      mtime: undefined,
      size: undefined,
    });
  });

  test('apptainer: exec with the scratch dir bound, --pwd, the image, then sh -c', async () => {
    process.env.PATH = `${standIns}:${savedPath}`;
    try {
      const wn = node({ runtime: 'auto', bind: ['/data/shared'] });
      const ctx = context({ image: `/cvmfs/${REPO}/lofar/lofar.sif` });
      await wn.stageIn(ctx);
      const wrapped = wn.wrapCommand(ctx, 'echo step ran');
      assert.equal(wrapped.file, path.join(standIns, 'apptainer'));
      const record = path.join(dir, 'apptainer-args.txt');
      const r = run(wrapped, ctx, { APPTAINER_RECORD: record });
      assert.equal(r.stdout, 'step ran\n');
      const sif = path.join(cvmfs, REPO, 'lofar', 'lofar.sif');
      assert.deepEqual(fs.readFileSync(record, 'utf8').trim().split('\n'), ['exec', '--bind', ctx.scratchDir, '--bind', '/data/shared', '--pwd', ctx.scratchDir, sif, '/bin/sh', '-c', 'echo step ran']);
      assert.equal(((await wn.provenance(ctx)).software as { runtime: string }).runtime, 'apptainer');
    } finally {
      process.env.PATH = savedPath;
    }
  });

  test('a .sif without apptainer or singularity: a clear error', async () => {
    process.env.PATH = '/nonexistent';
    try {
      await assert.rejects(node({ image: `/cvmfs/${REPO}/lofar/lofar.sif`, runtime: 'auto' }).preflight(), /no runtime for image: .*lofar\.sif: a \.sif image needs apptainer or singularity/);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  test('none: runs natively after sourcing the init script from the image directory', async () => {
    const wn = node({ image: `/cvmfs/${REPO}/lofar/native`, runtime: 'none', initScript: 'init.sh' });
    await wn.preflight();
    const ctx = context();
    await wn.stageIn(ctx);
    const r = run(wn.wrapCommand(ctx, 'echo "$LOFARROOT"'), ctx);
    assert.equal(r.stdout, '/opt/lofar-from-init\n', r.stderr);
  });
});

describe('node-local image cache', () => {
  /** One agent's worker node in its own process: preflight, then print provenance. */
  function agentProcess(cacheDir: string, image: string): Promise<Record<string, unknown>> {
    const code = `
      const { createWorkerNode } = await import(${JSON.stringify(NODE_MODULE.file)});
      const { createLogger } = await import(${JSON.stringify(LOG_MODULE.file)});
      const wn = createWorkerNode({ image: ${JSON.stringify(image)}, cvmfsRoot: ${JSON.stringify(cvmfs)}, imageCache: ${JSON.stringify(cacheDir)}, runtime: 'auto' }, createLogger('child', { level: 'silent', pretty: false }));
      await wn.preflight();
      process.stdout.write(JSON.stringify((await wn.provenance({ scratchDir: '/nowhere' })).software));
    `;
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...NODE_MODULE.execArgv, '--input-type=module', '-e', code], { env: { ...process.env, PATH: `${standIns}:${savedPath}` }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as Record<string, unknown>) : reject(new Error(`agent process exited ${code}: ${err}`))));
    });
  }

  test('two agents on one node copy an image once, and both use the verified copy', async () => {
    const cacheDir = path.join(dir, 'cache-shared');
    const image = `/cvmfs/${REPO}/lofar/lofar.sif`;
    const results = await Promise.all([agentProcess(cacheDir, image), agentProcess(cacheDir, image)]);
    const caches = results.map((r) => (r.image as { cache: { how: string; path: string }; adler32: string }));
    assert.deepEqual(caches.map((c) => c.cache.how).sort(), ['copied', 'hit']);
    assert.equal(caches[0]!.cache.path, caches[1]!.cache.path);
    assert.equal(caches[0]!.adler32, caches[1]!.adler32);
    assert.match(caches[0]!.adler32, /^[0-9a-f]{8}$/);
    assert.equal(fs.statSync(caches[0]!.cache.path).size, 24 << 20);
    assert.equal(fs.readdirSync(cacheDir).filter((e) => !e.endsWith('.lock')).length, 1);
    assert.equal((results[0]!.runtime as string), 'apptainer');
  });

  test('least recently used images are evicted beyond --image-cache-size', async () => {
    const cacheDir = path.join(dir, 'cache-lru');
    process.env.PATH = `${standIns}:${savedPath}`;
    try {
      const use = async (name: string) => {
        const wn = node({ image: `/cvmfs/${REPO}/lofar/${name}`, imageCache: cacheDir, imageCacheSize: '30M' });
        await wn.preflight();
        return (((await wn.provenance(context())).software as { image: { cache: { path: string } } }).image).cache.path;
      };
      const other = await use('other.sif');
      const third = await use('third.sif');
      assert.ok(fs.existsSync(other) && fs.existsSync(third), '12 + 12 MB fit in 30 MB');
      await new Promise((r) => setTimeout(r, 20));
      await use('other.sif'); // other is now the more recently used
      const big = await use('lofar.sif'); // 24 MB more: the least recently used (third) goes first
      assert.ok(fs.existsSync(big));
      assert.ok(!fs.existsSync(third), 'third.sif evicted');
      assert.ok(!fs.existsSync(other), 'other.sif evicted too: 12 + 24 MB exceed 30 MB');
    } finally {
      process.env.PATH = savedPath;
    }
  });
});
