/** The page's built assets (built from server/dashboard/web by `npm run build:web` into dist/web/dashboard) and its HTML shell. */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const ASSET_DIR = fileURLToPath(new URL('../../web/dashboard/', import.meta.url));
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
  let body = cache.get(name);
  if (!body) {
    try {
      body = fs.readFileSync(ASSET_DIR + name);
    } catch {
      throw new Error(`dashboard asset ${name} is missing from ${ASSET_DIR}: run \`npm run build\``);
    }
    cache.set(name, body);
  }
  return { body, type: TYPES[ext]! };
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
