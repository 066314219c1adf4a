/**
 * The self-contained agent the pilots run. `npm run build` makes it (dist/tokenpool-agent.mjs); in a
 * checkout where it is missing (sources run directly, or only `tsc` was run) the default one is built
 * on demand with the project's bundler, so that submitting never needs a step the README does not name.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { InputError } from '../../server/errors.js';
import { PROJECT_ROOT } from '../../server/own-module.js';
import { DEFAULT_BUNDLE } from './submit-template.js';

const BUNDLER = path.join(PROJECT_ROOT, 'jdl', 'bundle.mjs');
const HINT = 'Pass --bundle FILE, or build it with: npm run bundle';

/** The bundle's absolute path, built first when it is the default one and missing. */
export function agentBundle(requested: string): string {
  const bundle = path.resolve(requested);
  if (fs.existsSync(bundle)) return bundle;
  if (bundle !== path.resolve(DEFAULT_BUNDLE) || !fs.existsSync(BUNDLER)) throw new InputError(`the agent bundle not found: ${bundle}`, HINT);
  process.stderr.write(`building the agent bundle (once): ${bundle}\n`);
  try {
    execFileSync(process.execPath, [BUNDLER, '--outfile', bundle], { cwd: PROJECT_ROOT, stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n').slice(-5).join('\n');
    throw new InputError(`the agent bundle could not be built: ${stderr || (err as Error).message}`, `${HINT} (the bundler needs the project's dev dependencies: npm install)`);
  }
  return bundle;
}
