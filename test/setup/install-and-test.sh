#!/usr/bin/env bash
# `npm run test:all`: on Debian 12 (as root, or with sudo), installs everything the test suite needs
# (npm packages, Debian packages, and what the CouchDB test kit links against), starts the kit's real
# Apache CouchDB (a single node and a 3-node cluster) when the kit is there, type-checks, and runs
# every test on every backend. Arguments go to vitest (e.g. test/agent-lease.test.ts).
set -euo pipefail
cd "$(dirname "$0")/../.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "error: installing Debian packages needs root or sudo; as root run: $*" >&2; exit 1
  fi
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# The CouchDB test kit: next to the repository (../shared/couchdb) unless COUCHDB_TEST_KIT says where.
export COUCHDB_TEST_KIT="${COUCHDB_TEST_KIT:-$(cd .. && pwd)/shared/couchdb}"
kit=()
[ -f "$COUCHDB_TEST_KIT/start-single.sh" ] && kit=(--couchdb-kit)

mapfile -t missing < <(node --import tsx test/setup/missing-packages.ts "${kit[@]}")
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${#kit[@]}" -gt 0 ] && [ -z "${COUCHDB_URL:-}" ] && [ -z "${COUCHDB_CLUSTER_URLS:-}" ]; then
  export COUCHDB_HOME="${COUCHDB_HOME:-${TMPDIR:-/tmp}/tokenpool-test-couchdb}"
  stop_couchdb() { bash "$COUCHDB_TEST_KIT/stop.sh" >/dev/null 2>&1 || true; }
  trap stop_couchdb EXIT
  # A kit that fails to start stops the run: testing on the embedded server alone would pass unnoticed.
  start_kit() {
    local exports
    exports="$(timeout 180 bash "$COUCHDB_TEST_KIT/$1" --fresh)" || {
      echo "error: the CouchDB test kit's $1 failed (its message is above); free its ports, or point COUCHDB_URL and COUCHDB_CLUSTER_URLS at running servers" >&2
      exit 2
    }
    eval "$exports"
  }
  start_kit start-single.sh
  start_kit start-cluster.sh
  export COUCHDB_URL COUCHDB_CLUSTER_URLS
elif [ "${#kit[@]}" -eq 0 ]; then
  echo "# the CouchDB test kit is not at $COUCHDB_TEST_KIT: testing on the embedded server only (set COUCHDB_TEST_KIT, or COUCHDB_URL / COUCHDB_CLUSTER_URLS)"
fi

npm run typecheck
status=0
rm -f test-artifacts/vitest.json
npx vitest run "$@" || status=$?
if [ -f test-artifacts/vitest.json ]; then
  # One plain closing line of counts, for readers that do not know vitest's summary.
  node -e 'const r = JSON.parse(require("fs").readFileSync("test-artifacts/vitest.json", "utf8")); console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)'
fi
if [ "$status" -ne 0 ] && [ -n "${COUCHDB_HOME:-}" ]; then
  mkdir -p test-artifacts/couchdb
  find "$COUCHDB_HOME" -name 'couchdb*.log' -exec cp --parents {} test-artifacts/couchdb/ \; 2>/dev/null || true
fi
exit "$status"
