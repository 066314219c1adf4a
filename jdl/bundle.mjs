// Builds the self-contained pilot: dist/tokenpool-agent.mjs, one ES module that runs with plain `node`
// (>= 20) and no node_modules. Usage: node jdl/bundle.mjs [--outfile FILE]   (npm run bundle)
import { build } from 'esbuild';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = process.argv.indexOf('--outfile');
const outfile = at > 0 ? process.argv[at + 1] : `${root}dist/tokenpool-agent.mjs`;

// Our modules load some CommonJS packages with createRequire(import.meta.url)('pkg') (cheaper than import
// for unbundled Node, server/client.ts). esbuild bundles only plain require('pkg') calls: rewrite them so.
const OWN_REQUIRE = /createRequire\(import\.meta\.url\)\('([^']+)'\)/g;
const required = new Set();
const ownRequireAsPlainRequire = {
  name: 'own-require',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.includes('node_modules')) return undefined;
      const source = await fs.promises.readFile(args.path, 'utf8');
      if (!source.includes('createRequire(import.meta.url)(')) return undefined;
      const contents = source.replace(OWN_REQUIRE, (_, pkg) => {
        required.add(pkg);
        return `require('${pkg}')`;
      });
      return { contents, loader: 'ts' };
    });
  },
};

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
  plugins: [ownRequireAsPlainRequire],
  // CommonJS dependencies (pino, nano's helpers) call require(); give them one in the ES module.
  banner: { js: "import { createRequire as __tpCreateRequire } from 'node:module'; const require = __tpCreateRequire(import.meta.url);" },
});
const native = Object.keys(result.metafile.inputs).filter((f) => /\.node$|pouchdb|leveldown|sqlite/.test(f));
if (native.length) {
  console.error(`the pilot bundle must not hold server code, but it pulled in: ${native.join(', ')}`);
  process.exit(1);
}
const unbundled = [...required].filter((pkg) => !Object.keys(result.metafile.inputs).some((f) => f.includes(`node_modules/${pkg}/`)));
if (unbundled.length) {
  console.error(`the pilot bundle would load ${unbundled.join(', ')} from node_modules at run time: load it as createRequire(import.meta.url)('pkg')`);
  process.exit(1);
}
console.log(`${outfile}: ${fs.statSync(outfile).size} bytes`);
