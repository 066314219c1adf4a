/**
 * The test suite: every file on the embedded server, then every file that talks to a pool again on
 * each real Apache CouchDB the environment names (COUCHDB_URL: a single node; COUCHDB_CLUSTER_URLS: a
 * cluster, as the CouchDB test kit's start scripts print them). Each backend is a vitest project:
 * `--project cluster` narrows the run to one.
 *
 * Files run one at a time: many share machine-wide resources (Slurm daemons, a CouchDB node that an
 * outage test stops), and the machines this runs on have few cores.
 */
import { defineConfig } from 'vitest/config';

/** Files that test the embedded server itself or touch no pool: run once, on the embedded backend. */
const EMBEDDED_ONLY = [
  'test/server-*.test.ts',
  'test/db-validate.test.ts',
  'test/demo-run.test.ts',
  'test/dashboard-browser.test.ts',
  'test/node-{adler32,credentials,credentials-proxy,image,proxy,transfer,transfer-get}.test.ts',
  'test/submit-{parsing,storage}.test.ts',
  'test/setup-*.test.ts',
];
/** Files that need several CouchDB nodes. */
const CLUSTER_ONLY = ['test/cluster-*.test.ts'];

function backend(name: 'embedded' | 'couchdb' | 'cluster', exclude: string[]) {
  return { extends: true as const, test: { name, include: ['test/*.test.ts'], exclude, env: { TEST_BACKEND: name } } };
}

const projects = [backend('embedded', CLUSTER_ONLY)];
if (process.env.COUCHDB_URL) projects.push(backend('couchdb', [...EMBEDDED_ONLY, ...CLUSTER_ONLY]));
if (process.env.COUCHDB_CLUSTER_URLS) projects.push(backend('cluster', EMBEDDED_ONLY));

export default defineConfig({
  test: {
    projects,
    globalSetup: ['test/setup/preflight.ts'],
    pool: 'forks',
    fileParallelism: false,
    // Generous limits (real daemons on 2 busy cores), but every test and hook has one: nothing hangs.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // CI also keeps JUnit XML and vitest's JSON (test/setup/install-and-test.sh prints its closing counts from it).
    reporters: process.env.CI ? ['default', 'junit', 'json'] : ['default'],
    outputFile: { junit: 'test-artifacts/junit.xml', json: 'test-artifacts/vitest.json' },
  },
});
