#!/bin/sh
# run.sh - run every fuzz target under libFuzzer for a bounded time.
#
# usage: tests/fuzz/run.sh [SECONDS_PER_TARGET]   (make fuzz; default 60)
# Builds the targets with clang, libFuzzer, ASan and UBSan into build/libfuzzer,
# seeds each from tests/fuzz/corpus/NAME and writes new inputs to
# build/libfuzzer/corpus/NAME. A crash is saved as tests/fuzz/crash-*: copy it
# into tests/fuzz/corpus/NAME once fixed, so `make test` replays it forever.
set -eu
SECS=${1:-${FUZZ_SECONDS:-60}}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
B=build/libfuzzer
make --no-print-directory BUILD=$B CC=clang LIBFUZZER=1 \
    SANITIZER=fuzzer-no-link,address,undefined OPT=-O1 fuzz-targets
status=0
for f in $B/fuzz/fuzz_*; do
    name=$(basename "$f")
    short=${name#fuzz_}
    mkdir -p "$B/corpus/$short"
    echo "== $name: ${SECS}s"
    "$f" -max_total_time="$SECS" -artifact_prefix=tests/fuzz/ -print_final_stats=1 \
        "$B/corpus/$short" "tests/fuzz/corpus/$short" 2>&1 |
        grep -E 'stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|Done' || true
    ls tests/fuzz/crash-* >/dev/null 2>&1 && status=1
done
exit $status
