#!/bin/sh
# run.sh - run the whole civibus test suite from one build directory.
#
# usage: tests/run.sh BUILD_DIR
# Runs every unit and integration test binary in BUILD_DIR/tests and replays
# every fuzz corpus, each under a time limit, from the repository root.
# Counts test cases from cmocka's summaries (a binary that crashes or times
# out counts as one failure) and ends with "N passed, N failed".
# MEMCHECK=1 runs the unit tests under valgrind instead of the sanitizers.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
export CIVIBUSD="$ROOT/$BUILD/civibusd"
export CIVIBUS_CLI="$ROOT/$BUILD/civibus"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
LIMIT=${TEST_TIMEOUT:-600}

passed=0
failed=0
failures=""
out=$(mktemp)
trap 'rm -f "$out"' EXIT

run() { # name command...
    name=$1
    shift
    printf '%-34s ' "$name"
    start=$(date +%s)
    timeout -k 10 "$LIMIT" "$@" >"$out" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$out" | tail -n 1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed, timed out, or not a cmocka binary
    fi
    if [ "$rc" -eq 0 ] && [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        p=1 # a plain program that exits 0
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        echo "FAIL ($p passed, $f failed, exit $rc, ${secs}s)"
        failures="$failures $name"
        sed 's/^/    | /' "$out" | tail -n 80
    else
        echo "ok ($p passed, ${secs}s)"
    fi
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ "${MEMCHECK:-0}" = 1 ]; then
        [ -f "tests/unit/$name.c" ] || continue # integration tests start civibusd
        run "$name (valgrind)" valgrind -q --error-exitcode=9 --leak-check=full "$t"
    else
        run "$name" "$t"
    fi
done

for t in tests/integration/test_*.sh; do
    [ -f "$t" ] || continue
    [ "${MEMCHECK:-0}" = 1 ] && continue
    run "$(basename "$t")" sh "$t"
done

for f in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus="tests/fuzz/corpus/${name#fuzz_}"
    [ -d "$corpus" ] || continue
    run "$name (corpus)" "$f" "$corpus"
done

echo
[ -n "$failures" ] && echo "failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
