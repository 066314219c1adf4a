#!/usr/bin/env node
/**
 * `npm run demo`: the whole tokenpool loop on this machine in one command. It starts the embedded
 * server with a throwaway database, makes an observation's data (real tar files of synthetic
 * visibilities, LOFAR names, file:// URLs), adds one token per subband from that SURL list with the
 * real CLI, starts real `tokenpool agent` processes that stage the data in, run the averaging step
 * (scripts/demo/average.ts) and stage the results out, shows live progress, and ends with the
 * status table, where the results are and the dashboard URL. Ctrl-C stops everything it started.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startEmbeddedServer, type EmbeddedServer } from '../server/embedded/index.js';
import { loadOrCreateAdmin } from '../server/embedded/credentials.js';
import { createLogger } from '../server/log.js';
import { openPool } from '../server/client.js';
import { dashboardRoutes, dashboardUrl } from '../server/dashboard/index.js';
import { readerFromPool, type PoolReader } from '../server/status/reader.js';
import { statusSummary } from '../server/status/summary.js';
import { progressBar, renderStatus } from '../server/status/render.js';
import { watchChanges } from '../server/status/watch.js';
import type { StatusSummary } from '../server/status/types.js';
import { nodeArgs, ownModule } from '../server/own-module.js';
import { generateObservation } from './demo/generate.js';
import { table } from './output.js';

const CLI = nodeArgs(ownModule('./cli', import.meta.url));
/** The averaging step, as the agent's shell runs it. */
const STEP_COMMAND = [process.execPath, ...nodeArgs(ownModule('./demo/average', import.meta.url))].map((a) => `'${a}'`).join(' ');
const OBSID = 'L862010';
const STEP = 'average';
const DB = 'demo';

interface DemoOptions {
  subbands: number;
  agents: number;
  port: number;
  dir: string | null;
  /** exit when the work is done instead of serving the dashboard until Ctrl-C */
  exitWhenDone: boolean;
}

function options(): DemoOptions {
  const { values } = parseArgs({
    options: {
      subbands: { type: 'string', default: '16' },
      agents: { type: 'string', default: '3' },
      port: { type: 'string', default: '0' },
      dir: { type: 'string' },
      'exit-when-done': { type: 'boolean', default: !process.stdin.isTTY },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'npm run demo -- [--subbands N (16)] [--agents N (3, 1-8)] [--port P] [--dir DIR] [--exit-when-done]\n' +
        'Runs tokenpool end to end on this machine: server, data, tokens, agents, status, dashboard.\n',
    );
    process.exit(0);
  }
  const int = (name: string, v: string, min: number, max: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`error: --${name} must be a whole number from ${min} to ${max}, not ${v}\n`);
      process.exit(2);
    }
    return n;
  };
  return {
    subbands: int('subbands', values.subbands!, 1, 488),
    agents: int('agents', values.agents!, 1, 8),
    port: int('port', values.port!, 0, 65535),
    dir: values.dir ?? null,
    exitWhenDone: values['exit-when-done']!,
  };
}

class Demo {
  private server: EmbeddedServer | null = null;
  private readonly agents: ChildProcess[] = [];
  private readonly stop = new AbortController();
  private readonly tty = process.stdout.isTTY === true;
  readonly dir: string;
  private readonly dataDir: string;

  constructor(private readonly opts: DemoOptions) {
    this.dir = path.resolve(opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-demo-')));
    fs.mkdirSync(this.dir, { recursive: true });
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenpool-demo-db-'));
  }

  get signal(): AbortSignal {
    return this.stop.signal;
  }

  interrupt(): void {
    this.stop.abort();
  }

  async run(): Promise<number> {
    const say = (s: string) => process.stdout.write(s + '\n');
    say(`tokenpool demo: ${this.opts.subbands} subbands of ${OBSID}, ${this.opts.agents} agents, working in ${this.dir}`);

    say('1. generating the observation: synthetic visibilities in LOFAR-named tar files …');
    const obs = await generateObservation({ dir: this.dir, obsid: OBSID, subbands: this.opts.subbands });
    say(`   ${obs.files.length} files in ${path.dirname(obs.files[0]!)}; SURL list ${obs.surlList}`);
    if (this.signal.aborted) return 130;

    say('2. starting the embedded server with a throwaway database …');
    const admin = loadOrCreateAdmin(this.dataDir).credentials;
    this.server = await startEmbeddedServer({
      port: this.opts.port,
      dataDir: this.dataDir,
      inMemory: true,
      // the demo's server is on loopback for its owner: the page needs no login
      routes: dashboardRoutes({ credentials: admin }),
      log: createLogger('demo-server', { level: 'warn' }),
    });
    const dbUrl = `${this.server.url}/${DB}`;
    const creds = this.server.credentialsFile;
    const dashboard = dashboardUrl(this.server.url, DB);
    say(`   ${this.server.url} (admin credentials in ${creds})`);
    say(`   dashboard: ${dashboard}`);

    say('3. creating the pool and one token per subband from the SURL list …');
    await this.cli(['db', 'init', '--db', dbUrl, '--credentials', creds]);
    const results = path.join(this.dir, 'results');
    await this.cli([
      'tokens', 'add', '--db', dbUrl, '--credentials', creds, '--surls', obs.surlList, '--step', STEP,
      '--command', `${STEP_COMMAND} --time 4 --freq 8`,
      '--results', `${pathToFileURL(results).href}/\${OBSID}/\${STEP}/\${TOKEN_ID}.tar`,
    ]);
    if (this.signal.aborted) return 130;

    say(`4. starting ${this.opts.agents} agents (logs in ${path.join(this.dir, 'agents')}) …\n`);
    const pool = openPool({ db: dbUrl, credentials: creds });
    const reader = readerFromPool(pool);
    for (let i = 1; i <= this.opts.agents; i++) this.startAgent(i, dbUrl, creds);

    const final = await this.follow(reader);
    if (final === null) return 130;
    await this.waitForAgents(60_000);

    say('');
    say(renderStatus(final, table));
    const tars = listFiles(results).filter((f) => f.endsWith('.tar'));
    say('');
    say(`Results: ${tars.length} tar files in ${results}`);
    say(`  (each holds the averaged measurement set and its amplitude spectrum; inputs in ${path.join(this.dir, 'lta')})`);
    const done = final.totals.counts.done ?? 0;
    if (done !== final.totals.total) say(`  ${final.totals.total - done} tokens did not finish: see \`tokenpool failures --db ${dbUrl} --credentials ${creds}\``);
    if (this.opts.exitWhenDone) {
      say(`Dashboard: ${dashboard} (was live while the demo ran; run without --exit-when-done to keep it)`);
    } else {
      say(`Dashboard: ${dashboard}`);
      say(`Status:    node ${CLI.join(' ')} status --db ${dbUrl} --credentials ${creds}`);
      say('\nThe server keeps running for the dashboard; Ctrl-C stops it.');
      await new Promise<void>((resolve) => this.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    return done === final.totals.total ? 0 : 1;
  }

  /** Live progress until every token is done or failed; null when interrupted. */
  private async follow(reader: PoolReader): Promise<StatusSummary | null> {
    const watch = new AbortController();
    this.signal.addEventListener('abort', () => watch.abort(), { once: true });
    let latest: StatusSummary | null = null;
    let finished!: () => void;
    const allFinished = new Promise<void>((resolve) => (finished = resolve));
    let busy = false;
    let again = false;
    const show = async () => {
      if (busy) return void (again = true);
      busy = true;
      try {
        const s = await statusSummary(reader, {});
        latest = s;
        this.progress(s);
        const c = s.totals.counts;
        if (s.totals.total > 0 && (c.done ?? 0) + (c.error ?? 0) === s.totals.total) finished();
      } finally {
        busy = false;
        if (again) {
          again = false;
          void show();
        }
      }
    };
    await show();
    const watching = watchChanges(reader, { signal: watch.signal, onChange: () => void show(), throttleMs: 500 });
    await Promise.race([allFinished, new Promise<void>((r) => this.signal.addEventListener('abort', () => r(), { once: true }))]);
    watch.abort();
    await watching;
    if (this.tty) process.stdout.write('\n');
    if (this.signal.aborted) return null;
    return statusSummary(reader, {}).catch(() => latest);
  }

  private lastLine = '';
  private progress(s: StatusSummary): void {
    const c = s.totals.counts;
    const active = (c.locked ?? 0) + (c.downloading ?? 0) + (c.running ?? 0) + (c.uploading ?? 0);
    const line =
      `   ${progressBar(c.done ?? 0, c.error ?? 0, s.totals.total, 30)} ${c.done ?? 0}/${s.totals.total} done, ` +
      `${active} in progress, ${c.todo ?? 0} to do, ${c.error ?? 0} failed`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    process.stdout.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  private startAgent(i: number, dbUrl: string, creds: string): void {
    const workdir = path.join(this.dir, 'agents', `agent-${i}`);
    fs.mkdirSync(workdir, { recursive: true });
    const log = fs.openSync(path.join(this.dir, 'agents', `agent-${i}.log`), 'a');
    const child = spawn(
      process.execPath,
      [...CLI, 'agent', '--db', dbUrl, '--credentials', creds, '--runtime', 'none', '--workdir', workdir, '--idle-exit', '5', '--poll', '1', '--jitter', '1', '--lease', '60', '--grace', '5'],
      // own process group: a terminal's Ctrl-C reaches the demo, which stops the agents in order
      { stdio: ['ignore', log, log], detached: true, env: { ...process.env, TOKENPOOL_LOG_JSON: '1' } },
    );
    fs.closeSync(log);
    this.agents.push(child);
  }

  private async waitForAgents(ms: number): Promise<void> {
    const running = this.agents.filter((a) => a.exitCode === null && a.signalCode === null);
    await Promise.race([
      Promise.all(running.map((a) => new Promise((r) => a.once('exit', r)))),
      new Promise((r) => setTimeout(r, ms).unref()),
    ]);
  }

  private cli(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [...CLI, ...args, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tokenpool ${args.slice(0, 2).join(' ')} failed (exit ${code}):\n${out}`))));
    });
  }

  /** Stops agents (TERM, then KILL after their grace), then the server; removes the throwaway database. */
  async shutdown(): Promise<void> {
    for (const a of this.agents) if (a.exitCode === null && a.signalCode === null) a.kill('SIGTERM');
    await this.waitForAgents(15_000);
    for (const a of this.agents) if (a.exitCode === null && a.signalCode === null) process.kill(-a.pid!, 'SIGKILL');
    await this.server?.stop();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

const demo = new Demo(options());
const onSignal = () => {
  if (demo.signal.aborted) process.exit(130); // second Ctrl-C: now
  process.stdout.write('\nstopping: agents first, then the server …\n');
  demo.interrupt();
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
let code = 1;
try {
  code = await demo.run();
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
} finally {
  await demo.shutdown();
}
process.exitCode = code;

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}
