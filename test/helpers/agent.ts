/** Helpers for the agent tests: a fresh initialised pool, tokens, and real agent processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestServer } from './server.js';
import { CLI } from './cli.js';
import { initDatabase } from '../../server/setup.js';
import { newToken, type NewToken, type Token } from '../../server/token.js';
import type { Pool } from '../../server/client.js';

export interface TestPool {
  dbUrl: string;
  pool: Pool;
  credentials: string;
  /** The database through each node of a cluster; agents are spread over them */
  nodeUrls?: string[];
}

/**
 * A fresh initialised pool, with the guard on unless asked otherwise: every write the product makes is
 * then also checked by the validate function. Without it: for documents the guard would refuse
 * (malformed tokens) and for replication-style writes (new_edits=false), which the embedded engine
 * drops silently while a validate function is installed.
 */
export async function freshPool(server: TestServer, opts: { guard?: boolean } = {}): Promise<TestPool> {
  const dbUrl = server.newDbUrl('agent');
  const pool = server.adminPool(dbUrl);
  await initDatabase(pool, { guard: opts.guard ?? true });
  return { dbUrl, pool, credentials: server.adminCredentialsFile(), nodeUrls: server.nodes.map((_, i) => server.onNode(dbUrl, i)) };
}

export const unguardedPool = (server: TestServer): Promise<TestPool> => freshPool(server, { guard: false });

export async function addTokens(pool: Pool, specs: NewToken[]): Promise<Token[]> {
  const tokens = specs.map((s) => newToken(s));
  const res = await pool.db.bulk({ docs: tokens });
  for (const r of res) if (r.error) throw new Error(`could not add ${r.id}: ${r.error} ${r.reason}`);
  return tokens;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tokenpool-${prefix}-`));
}

export interface AgentProcess {
  child: ChildProcess;
  /** stderr so far (JSON log lines) */
  logs(): string;
  events(): Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let agentsStarted = 0;

/** Starts `tokenpool agent` as a real process (JSON logs, no start-up jitter unless given); on a cluster each agent talks to the next node. */
export function startAgent(tp: TestPool, args: string[], env: NodeJS.ProcessEnv = {}): AgentProcess {
  const nodes = tp.nodeUrls ?? [tp.dbUrl];
  const dbUrl = nodes[agentsStarted++ % nodes.length]!;
  const child = spawn(process.execPath, [...CLI, 'agent', '--db', dbUrl, '--credentials', tp.credentials, '--jitter', '0', ...args], {
    env: { ...process.env, TOKENPOOL_LOG_JSON: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdout!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    logs: () => stderr,
    events: () =>
      stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
  };
}

/** Resolves when `check` passes, polling; rejects after timeoutMs with `what` in the message. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Retries an assertion until it passes, then returns its value; after timeoutMs rethrows its last failure.
 * For what views show after another process's writes: a cluster answers a view from any copy of each shard,
 * and one copy may still lack a write that the others acknowledged.
 */
export async function eventually<T>(assertion: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

export async function allTokens(pool: Pool): Promise<Token[]> {
  const res = await pool.db.list({ include_docs: true });
  return res.rows.map((r) => r.doc as Token).filter((d) => d && d.type === 'token');
}

/** Kills an agent that a failed test left behind. */
export function killAgent(a: AgentProcess): void {
  if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
}
