/** Helpers for the submission tests: the pilot bundle built fresh, an agent-role account and its credentials file. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROLES } from '../../server/security.js';
import type { TestPool } from './agent.js';

/** The repository (dist/test/helpers/ is three levels below). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const PILOT_SH = path.join(ROOT, 'jdl', 'pilot.sh');

/** Builds the self-contained agent into `dir` with the project's bundle script; returns its path. */
export function buildBundle(dir: string): string {
  const out = path.join(dir, 'tokenpool-agent.mjs');
  execFileSync(process.execPath, [path.join(ROOT, 'jdl', 'bundle.mjs'), '--outfile', out], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  return out;
}

export interface PilotAccount {
  name: string;
  password: string;
  /** 0600 {"url","name","password"} */
  file: string;
}

/** An account with only the agent role on the test server, and its credentials file. */
export async function addPilotAccount(tp: TestPool, dir: string, role: string = ROLES.agent): Promise<PilotAccount> {
  const name = `pilot-${randomBytes(3).toString('hex')}`;
  const password = `pw-${randomBytes(12).toString('hex')}`;
  const id = `org.couchdb.user:${name}`;
  await tp.pool.server.request({ db: '_users', doc: id, method: 'PUT', body: { _id: id, name, password, type: 'user', roles: [role] } });
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ url: tp.dbUrl, name, password }), { mode: 0o600 });
  return { name, password, file };
}

/** Command lines of every process, as `ps` shows them to any user of the machine. */
export function allCommandLines(): string {
  return execFileSync('ps', ['-eo', 'args', '-ww'], { encoding: 'utf8' });
}
