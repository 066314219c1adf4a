/**
 * The page's assets and its HTML shell. Built, they come from dist/web/dashboard (`npm run build:web`);
 * run from the sources, esbuild bundles them in memory on first use, as build:web would.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PROJECT_ROOT, RUNNING_FROM_SOURCES } from '../own-module.js';

const ASSET_DIR = path.join(PROJECT_ROOT, 'dist', 'web', 'dashboard');
const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };
const cache = new Map<string, Buffer>();

export interface Asset {
  body: Buffer;
  type: string;
}

/** app.js or app.css; null for any other name (no path ever reaches the file system from a URL). */
export function asset(name: string): Asset | null {
  const ext = name.slice(name.lastIndexOf('.'));
  if (!['app.js', 'app.css'].includes(name)) return null;
  if (cache.size === 0) loadAssets();
  return { body: cache.get(name)!, type: TYPES[ext]! };
}

function loadAssets(): void {
  if (RUNNING_FROM_SOURCES) {
    const esbuild = createRequire(import.meta.url)('esbuild') as typeof import('esbuild');
    const built = esbuild.buildSync({
      entryPoints: [path.join(PROJECT_ROOT, 'server', 'dashboard', 'web', 'src', 'main.ts')],
      bundle: true,
      format: 'esm',
      target: 'es2020',
      write: false,
      outdir: 'out',
      logLevel: 'silent',
    });
    for (const file of built.outputFiles) cache.set(`app${path.extname(file.path)}`, Buffer.from(file.contents));
    return;
  }
  for (const name of ['app.js', 'app.css']) {
    try {
      cache.set(name, fs.readFileSync(path.join(ASSET_DIR, name)));
    } catch {
      throw new Error(`dashboard asset ${name} is missing from ${ASSET_DIR}: run \`npm run build\``);
    }
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The page for one database; the script reads where its API is from data attributes. */
export function pageHtml(prefix: string, db: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(db)} · tokenpool</title>
<link rel="stylesheet" href="${escapeHtml(prefix)}/assets/app.css">
</head>
<body>
<div id="app" data-api="${escapeHtml(`${prefix}/${encodeURIComponent(db)}/api`)}" data-db="${escapeHtml(db)}"></div>
<script type="module" src="${escapeHtml(prefix)}/assets/app.js"></script>
</body>
</html>
`;
}

export function indexHtml(prefix: string, dbs: string[]): string {
  const items = dbs.map((d) => `<li><a href="${escapeHtml(`${prefix}/${encodeURIComponent(d)}/`)}">${escapeHtml(d)}</a></li>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenpool</title>
<link rel="stylesheet" href="${escapeHtml(prefix)}/assets/app.css"></head>
<body><main class="index"><h1>tokenpool pools</h1>${dbs.length ? `<ul>${items}</ul>` : '<p>No databases yet.</p>'}</main></body></html>
`;
}
