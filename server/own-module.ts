/**
 * Our own modules started as processes or threads. Built, the compiled `.js` beside the caller runs
 * with plain node. Run from the TypeScript sources (vitest, `tsx`), the `.ts` file runs through tsx's
 * loader, so the test suite and a developer need no build step.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

export interface OwnModule {
  /** The file to run. */
  file: string;
  /** Node options for the process that runs it. */
  execArgv: string[];
}

function fromSources(callerUrl: string): boolean {
  return callerUrl.endsWith('.ts');
}

/** The installed package or checkout (this file is server/own-module.ts, built dist/server/own-module.js). */
export const PROJECT_ROOT = fileURLToPath(new URL(fromSources(import.meta.url) ? '../' : '../../', import.meta.url));

/** Whether tokenpool runs from its TypeScript sources rather than a build. */
export const RUNNING_FROM_SOURCES = fromSources(import.meta.url);

/** `relative` is a path without extension, from the calling module's folder (e.g. './engine'). */
export function ownModule(relative: string, callerUrl: string): OwnModule {
  if (!fromSources(callerUrl)) return { file: fileURLToPath(new URL(`${relative}.js`, callerUrl)), execArgv: process.execArgv };
  const tsx = pathToFileURL(createRequire(callerUrl).resolve('tsx')).href;
  return { file: fileURLToPath(new URL(`${relative}.ts`, callerUrl)), execArgv: ['--import', tsx] };
}

/** The node argv (before the script's own arguments) that runs one of our modules. */
export function nodeArgs(m: OwnModule): string[] {
  return [...m.execArgv, m.file];
}

/** tsx's ES-module API: `require.resolve` gives its CommonJS twin, so read the package's exports. */
function tsxEsmApi(callerUrl: string): string {
  const manifest = createRequire(callerUrl).resolve('tsx/package.json');
  const exports = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports;
  return pathToFileURL(path.join(path.dirname(manifest), exports['./esm/api']!.import.default)).href;
}

/** A worker thread running one of our modules. Node 20 applies no `--import` to threads, so from the sources the thread registers tsx itself. */
export function ownWorker(relative: string, callerUrl: string): Worker {
  if (!fromSources(callerUrl)) return new Worker(new URL(`${relative}.js`, callerUrl));
  const api = tsxEsmApi(callerUrl);
  const entry = new URL(`${relative}.ts`, callerUrl).href;
  const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true });
}
