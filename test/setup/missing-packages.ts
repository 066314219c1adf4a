/** Prints the Debian packages the test suite still needs, one per line (test/setup/install.sh). `--couchdb-kit`: also what the CouchDB test kit needs. */
import { missingRequirements } from './requirements.js';

const packages = new Set(missingRequirements({ couchDbKit: process.argv.includes('--couchdb-kit') }).map((r) => r.pkg));
for (const pkg of packages) console.log(pkg);
