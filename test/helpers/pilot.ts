/** Helpers for the submission tests: the pilot bundle built fresh, an agent-role account and its credentials file. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { RoleName } from '../../server/security.js';
import { generatePassword, upsertUser, writeCredentialsFile } from '../../server/users.js';
import type { TestPool } from './agent.js';

import { PROJECT_ROOT as ROOT } from '../../server/own-module.js';

export { ROOT };
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

/** An account with one tokenpool role (agent unless told) on the test server, and its credentials file, made as `db user add` makes them. */
export async function addPilotAccount(tp: TestPool, dir: string, role: RoleName = 'agent'): Promise<PilotAccount> {
  const name = `pilot-${randomBytes(3).toString('hex')}`;
  const password = generatePassword();
  await upsertUser(tp.pool, name, role, password);
  const file = path.join(dir, `${name}.json`);
  writeCredentialsFile(file, { url: tp.dbUrl, name, password });
  return { name, password, file };
}

/** Command lines of every process, as `ps` shows them to any user of the machine. */
export function allCommandLines(): string {
  return execFileSync('ps', ['-eo', 'args', '-ww'], { encoding: 'utf8' });
}
