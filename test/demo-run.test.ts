/** `npm run demo` non-interactively: every token done, results on disk, nothing left running; and Ctrl-C. */
import { test } from 'vitest';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import * as tar from 'tar';
import { nodeArgs, ownModule } from '../server/own-module.js';

const DEMO = nodeArgs(ownModule('../scripts/demo', import.meta.url));

interface Run {
  code: number | null;
  out: string;
}

function startDemo(dir: string, args: string[], onOutput?: (out: string, kill: (s: NodeJS.Signals) => void) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...DEMO, '--dir', dir, '--exit-when-done', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    const add = (c: Buffer) => {
      out += c.toString();
      onOutput?.(out, (s) => child.kill(s));
    };
    child.stdout.on('data', add);
    child.stderr.on('data', add);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** Processes whose command line or environment mentions one of these paths. */
function processesMentioning(paths: string[]): string[] {
  const found: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    for (const f of ['cmdline', 'environ']) {
      let text = '';
      try {
        text = fs.readFileSync(`/proc/${pid}/${f}`, 'utf8');
      } catch {
        continue;
      }
      if (paths.some((p) => text.includes(p))) found.push(`${pid}: ${text.replace(/\0/g, ' ').slice(0, 200)}`);
    }
  }
  return found;
}

function serverDataDir(out: string): string {
  const m = /admin credentials in (\S+)\/admin\.json/.exec(out);
  assert.ok(m, `the demo names its server's data directory:\n${out}`);
  return m[1]!;
}

test('the demo processes every subband with real agents and leaves results and no process behind', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-demo-test-'));
  try {
    const run = await startDemo(dir, ['--subbands', '5', '--agents', '2']);
    assert.equal(run.code, 0, run.out);
    assert.match(run.out, /L862010\s+average\s+█{20}\s+100%\s+5\/5/);
    assert.match(run.out, /Results: 5 tar files in /);
    assert.match(run.out, /Dashboard: http:\/\/127\.0\.0\.1:\d+\/_tokenpool\/dashboard\/demo\//);

    const resultsDir = path.join(dir, 'results', 'L862010', 'average');
    const tars = fs.readdirSync(resultsDir).sort();
    assert.deepEqual(tars, [100, 101, 102, 103, 104].map((sb) => `L862010_average_SB${sb}.tar`));
    const entries: string[] = [];
    await tar.t({ file: path.join(resultsDir, tars[0]!), onReadEntry: (e) => entries.push(e.path) });
    assert.ok(entries.includes('L862010_SB100_uv.avg4x8.MS/DATA'), entries.join(', '));
    assert.ok(entries.includes('L862010_SB100_uv.avg4x8.MS.spectrum.json'));
    // the raw data was 120 × 64 (time × channels); averaged 4 × 8 it is 30 × 8
    const meta = path.join(dir, 'meta');
    fs.mkdirSync(meta);
    await tar.x({ file: path.join(resultsDir, tars[0]!), cwd: meta });
    const m = JSON.parse(fs.readFileSync(path.join(meta, 'L862010_SB100_uv.avg4x8.MS', 'meta.json'), 'utf8')) as { ntime: number; nchan: number };
    assert.deepEqual([m.ntime, m.nchan], [30, 8]);

    const dataDir = serverDataDir(run.out);
    assert.ok(!fs.existsSync(dataDir), 'the throwaway database is removed');
    assert.deepEqual(processesMentioning([dir, dataDir]), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C stops the agents and the server and leaves no process behind', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-demo-test-'));
  try {
    let sent = false;
    const run = await startDemo(dir, ['--subbands', '40', '--agents', '3'], (out, kill) => {
      // interrupt once agents are working
      if (!sent && /\d+ in progress/.test(out) && !/ 0 in progress/.test(out.split('\n').at(-2) ?? '')) {
        sent = true;
        kill('SIGINT');
      }
    });
    assert.ok(sent, run.out);
    assert.equal(run.code, 130, run.out);
    assert.match(run.out, /stopping: agents first, then the server/);
    const dataDir = serverDataDir(run.out);
    assert.ok(!fs.existsSync(dataDir));
    assert.deepEqual(processesMentioning([dir, dataDir]), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
