#!/bin/sh
# tokenpool pilot: what a batch system (Slurm, a grid WMS) runs on the worker node.
#
# It finds a Node.js >= 20, makes a private scratch directory, runs the self-contained agent bundle
# (tokenpool-agent.mjs) in it with the batch job's environment, passes SIGTERM/SIGINT/SIGHUP on to the
# agent as SIGTERM (so that a walltime warning or scancel puts the current token back), removes the scratch
# directory on exit. Arguments are passed to `tokenpool agent` unchanged; every agent flag can also be
# set as TOKENPOOL_<FLAG> in the environment. Secrets never appear here: the agent reads the database
# URL and its account from the credentials file.
#
# Environment:
#   TOKENPOOL_NODE         node binary to use (checked first)
#   TOKENPOOL_NODE_SEARCH  colon-separated list of node binaries or glob patterns tried after PATH
#                          (default: Node.js builds on CVMFS, see DEFAULT_NODE_SEARCH below)
#   TOKENPOOL_BUNDLE       the agent bundle (default: tokenpool-agent.mjs beside this script, in the
#                          current directory, or ../dist/ of a tokenpool checkout)
#   TOKENPOOL_CREDENTIALS  credentials file (default: tokenpool-credentials.json beside this script
#                          or in the current directory, as a grid sandbox delivers it)
#   TOKENPOOL_SCRATCH      where to make the scratch directory (default: $TMPDIR, else /tmp)
#
# Exit codes of the pilot itself (otherwise the agent's exit code is returned):
#   66  the agent bundle tokenpool-agent.mjs was not found
#   69  no Node.js >= 20 was found: install Node.js 20 or newer on the worker nodes (or make a
#       CVMFS repository with it available) and/or point TOKENPOOL_NODE at its node binary
#   73  the scratch directory could not be created

MIN_NODE_MAJOR=20
# The agent's memory settings (docs/agent.md, Memory): V8's young generation kept at 1 MB per
# semi-space (it grows to 8-16 MB otherwise): the agent allocates little; ~7 MB less resident.
NODE_FLAGS="--max-semi-space-size=1"
DEFAULT_NODE_SEARCH="/cvmfs/software.eessi.io/versions/*/software/linux/*/*/software/nodejs/*/bin/node:/cvmfs/sft.cern.ch/lcg/views/LCG_*/*/bin/node:/cvmfs/sft.cern.ch/lcg/releases/nodejs/*/*/bin/node"

say() {
  printf 'tokenpool pilot: %s\n' "$*" >&2
}

here=$(cd "$(dirname "$0")" && pwd)
start_dir=$(pwd)

# Prints the major version of a node binary, or nothing when it does not run.
node_major() {
  "$1" -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null
}

usable_node() {
  [ -n "$1" ] && [ -x "$1" ] || return 1
  major=$(node_major "$1")
  [ -n "$major" ] && [ "$major" -ge "$MIN_NODE_MAJOR" ] 2>/dev/null
}

find_node() {
  if [ -n "${TOKENPOOL_NODE:-}" ]; then
    if usable_node "$TOKENPOOL_NODE"; then
      printf '%s\n' "$TOKENPOOL_NODE"
      return 0
    fi
    say "TOKENPOOL_NODE=$TOKENPOOL_NODE is not a Node.js >= $MIN_NODE_MAJOR; looking elsewhere"
  fi
  on_path=$(command -v node 2>/dev/null || true)
  if usable_node "$on_path"; then
    printf '%s\n' "$on_path"
    return 0
  fi
  # The first usable match wins: list preferred locations first.
  old_ifs=$IFS
  IFS=:
  set -f
  # shellcheck disable=SC2086 # split on ":" only; globs are expanded below, one entry at a time
  set -- ${TOKENPOOL_NODE_SEARCH-$DEFAULT_NODE_SEARCH}
  set +f
  IFS=$old_ifs
  for pattern in "$@"; do
    # Unquoted on purpose: entries may be glob patterns.
    for candidate in $pattern; do
      if usable_node "$candidate"; then
        printf '%s\n' "$candidate"
        return 0
      fi
    done
  done
  return 1
}

find_file() {
  for candidate in "$@"; do
    if [ -f "$candidate" ]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

if ! node=$(find_node); then
  say "no Node.js >= $MIN_NODE_MAJOR found (looked at TOKENPOOL_NODE, PATH and ${TOKENPOOL_NODE_SEARCH-$DEFAULT_NODE_SEARCH})."
  say "Install Node.js $MIN_NODE_MAJOR or newer on the worker nodes (e.g. the distribution's nodejs package or a tarball from nodejs.org on a shared file system) and set TOKENPOOL_NODE to its node binary."
  exit 69
fi

if ! bundle=$(find_file "${TOKENPOOL_BUNDLE:-}" "$here/tokenpool-agent.mjs" "$start_dir/tokenpool-agent.mjs" "$here/../dist/tokenpool-agent.mjs"); then
  say "agent bundle tokenpool-agent.mjs not found (set TOKENPOOL_BUNDLE, or ship it beside pilot.sh; build it with: npm run bundle)"
  exit 66
fi
bundle=$(cd "$(dirname "$bundle")" && pwd)/$(basename "$bundle")

if [ -z "${TOKENPOOL_CREDENTIALS:-}" ]; then
  if credentials=$(find_file "$here/tokenpool-credentials.json" "$start_dir/tokenpool-credentials.json"); then
    TOKENPOOL_CREDENTIALS=$credentials
  fi
fi
if [ -n "${TOKENPOOL_CREDENTIALS:-}" ]; then
  # The agent runs in the scratch directory: a relative path must keep pointing at the same file.
  case $TOKENPOOL_CREDENTIALS in
    /*) ;;
    *) TOKENPOOL_CREDENTIALS=$start_dir/$TOKENPOOL_CREDENTIALS ;;
  esac
  export TOKENPOOL_CREDENTIALS
fi

# Storage credentials shipped in a grid sandbox (0600 copies); Slurm pilots get their paths instead.
if [ -z "${TOKENPOOL_MACAROONS:-}" ] && macaroons=$(find_file "$here/tokenpool-macaroons.json" "$start_dir/tokenpool-macaroons.json"); then
  TOKENPOOL_MACAROONS=$(cd "$(dirname "$macaroons")" && pwd)/$(basename "$macaroons")
  export TOKENPOOL_MACAROONS
fi
if [ -z "${BEARER_TOKEN_FILE:-}" ] && [ -z "${BEARER_TOKEN:-}" ] && bearer=$(find_file "$here/tokenpool-bearer-token" "$start_dir/tokenpool-bearer-token"); then
  BEARER_TOKEN_FILE=$(cd "$(dirname "$bearer")" && pwd)/$(basename "$bearer")
  export BEARER_TOKEN_FILE
fi

scratch_base=${TOKENPOOL_SCRATCH:-${TMPDIR:-/tmp}}
if ! scratch=$(mktemp -d "$scratch_base/tokenpool-pilot.XXXXXX"); then
  say "cannot create a scratch directory in $scratch_base (set TOKENPOOL_SCRATCH to a writable node-local directory)"
  exit 73
fi

child=
stopping=
# shellcheck disable=SC2317 # called from a trap
cleanup() {
  cd / && rm -rf "$scratch"
}
# shellcheck disable=SC2317 # called from a trap
forward() {
  # Pass it on once, as TERM (the agent's stop signal): the agent stops its step, puts the token
  # back and exits.
  if [ -z "$stopping" ] && [ -n "$child" ]; then
    stopping=1
    say "received $1; asking the agent to stop"
    kill -s TERM "$child" 2>/dev/null
  fi
}
trap cleanup EXIT
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP

cd "$scratch" || exit 73
say "node $("$node" --version) at $node; bundle $bundle; scratch $scratch"
# Logs are JSON lines on stderr: no terminal, no pretty printer needed on the worker node.
# shellcheck disable=SC2086 # NODE_FLAGS is a list of flags
TOKENPOOL_LOG_JSON=1 TMPDIR=$scratch "$node" $NODE_FLAGS "$bundle" agent "$@" &
child=$!
status=0
wait "$child" || status=$?
# A trapped signal interrupts `wait`; wait again for the agent's own exit status.
while kill -0 "$child" 2>/dev/null; do
  status=0
  wait "$child" || status=$?
done
exit "$status"
