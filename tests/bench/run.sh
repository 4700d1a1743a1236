#!/bin/sh
# run.sh - run the civibus benchmarks from one build directory.
# usage: tests/bench/run.sh BUILD_DIR [bench_hub options, e.g. --runs 5 --quick]
set -eu
BUILD=${1:-build}
shift || true
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CIVIBUSD="$ROOT/$BUILD/civibusd"
exec "$BUILD/bench/bench_hub" "$@"
