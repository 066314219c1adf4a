// Builds the self-contained pilot: dist/tokenpool-agent.mjs, one ES module that runs with plain `node`
// (>= 20) and no node_modules. Usage: node jdl/bundle.mjs [--outfile FILE]   (npm run bundle)
import { build } from 'esbuild';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = process.argv.indexOf('--outfile');
const outfile = at > 0 ? process.argv[at + 1] : `${root}dist/tokenpool-agent.mjs`;

const result = await build({
  entryPoints: [`${root}scripts/pilot.ts`],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minify: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  // CommonJS dependencies (pino, nano's helpers) call require(); give them one in the ES module.
  banner: { js: "import { createRequire as __tpCreateRequire } from 'node:module'; const require = __tpCreateRequire(import.meta.url);" },
});
const native = Object.keys(result.metafile.inputs).filter((f) => /\.node$|pouchdb|leveldown|sqlite/.test(f));
if (native.length) {
  console.error(`the pilot bundle must not hold server code, but it pulled in: ${native.join(', ')}`);
  process.exit(1);
}
console.log(`${outfile}: ${fs.statSync(outfile).size} bytes`);
