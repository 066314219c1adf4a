/**
 * vitest's global setup: before any test, checks that everything the suite runs for real is here and
 * every CouchDB it was pointed at answers. Anything missing is one message naming it and the command
 * that installs it, within seconds, instead of a cascade of failures later.
 */
import { killLeftovers, markRun } from './leftovers.js';
import { missingRequirements } from './requirements.js';

const INSTALL = 'npm run test:all (as root or with sudo: installs the Debian packages, starts the CouchDB test kit, runs every test)';

async function answers(url: string): Promise<string | null> {
  const u = new URL('/_up', url);
  const auth = u.username ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` : undefined;
  u.username = '';
  u.password = '';
  try {
    const res = await fetch(u, { headers: auth ? { authorization: auth } : {}, signal: AbortSignal.timeout(5000) });
    return res.ok ? null : `${u.origin} answered ${res.status}`;
  } catch (err) {
    return `${u.origin} does not answer (${(err as Error).name === 'TimeoutError' ? 'no answer in 5 s' : (err as Error).message})`;
  }
}

export default async function preflight(): Promise<() => void> {
  const problems: string[] = [];
  const missing = missingRequirements({ couchDbKit: false });
  if (missing.length) {
    const pkgs = [...new Set(missing.map((r) => r.pkg))];
    problems.push(`missing: ${missing.map((r) => r.what).join(', ')}\n  apt-get install ${pkgs.join(' ')}`);
  }
  if (process.getuid?.() !== 0) problems.push('not root: the Slurm test cluster runs munged and slurmd as system users, which needs root');
  const couchdbs = [process.env.COUCHDB_URL, ...(process.env.COUCHDB_CLUSTER_URLS ?? '').split(/\s+/)].filter((u): u is string => !!u);
  for (const problem of await Promise.all(couchdbs.map(answers))) {
    if (problem) problems.push(`a CouchDB this run was given: ${problem} (unset COUCHDB_URL / COUCHDB_CLUSTER_URLS, or start it: docs/server.md, "Running the test matrix locally")`);
  }
  if (problems.length === 0) {
    const mark = markRun();
    return () => {
      const left = killLeftovers(mark);
      if (left.length) console.error(`\nkilled ${left.length} processes that tests left running:\n  ${left.join('\n  ')}\n`);
    };
  }
  console.error(`\nThe test suite cannot run here:\n- ${problems.join('\n- ')}\n\nTo install everything and run the suite: ${INSTALL}\n`);
  process.exit(2);
}
