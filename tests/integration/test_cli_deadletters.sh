#!/bin/sh
# test_cli_deadletters - `civibus deadletters list|redrive|drop` and their
# JSON against a real hub with max_attempts 2. Dead letters are made with
# `civibus tail` writing to /dev/full: it cannot print, so it acknowledges
# nothing, and each of its sessions ends with the event in flight; the third
# session finds the event past max_attempts, and gets the next one instead.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CLI=${CIVIBUS_CLI:-$ROOT/build/civibus}
HUBD=${CIVIBUSD:-$ROOT/build/civibusd}
T=$(mktemp -d /tmp/civibus-clidl-XXXXXX)
hub=""
cleanup() {
    [ -n "$hub" ] && kill "$hub" 2>/dev/null && wait "$hub" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "test_cli_deadletters: $*" >&2; cat "$T/hub.log" >&2 || true; exit 1; }

mkdir "$T/registry"
"$CLI" keygen --hub --dir "$T/keys" >/dev/null
"$CLI" keygen --agency tax-office --dir "$T/keys" --registry "$T/registry" >/dev/null
mkfifo "$T/ready"
"$HUBD" --data "$T/data" --listen 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --registry "$T/registry" \
    --key "$T/keys/hub.key" --no-sync --max-attempts 2 --redelivery-backoff-ms 0 >"$T/ready" 2>"$T/hub.log" &
hub=$!
read -r line <"$T/ready"
line=${line#civibusd ready endpoint=}
export CIVIBUS_HUB="${line%% *}" CIVIBUS_HUB_KEY="$T/keys/hub.pub"
export CIVIBUS_KEY="$T/keys/tax-office.key" CIVIBUS_TIMEOUT=5000

pub() { "$CLI" publish --type tax.return.filed --data "{\"n\":$1}" >/dev/null; }
# A consumer that cannot print: exits 4, acknowledging nothing.
lost() {
    rc=0
    timeout 30 "$CLI" tail --name work --filter 'tax.*' "$@" >/dev/full 2>"$T/err" || rc=$?
    [ "$rc" = 4 ] || fail "tail to /dev/full exited $rc, not 4: $(cat "$T/err")"
}
# One event, printed and acknowledged.
one() { timeout 30 "$CLI" tail --name work --filter 'tax.*' --count 1 >"$T/one" || fail "tail --count 1 failed"; }

# Seq 1 becomes a dead letter, seq 2 is delivered after it.
pub 1
pub 2
lost --from first
lost
one
grep -q '"seq":2,' "$T/one" || fail "after the dead letter: $(cat "$T/one")"
grep -q '"attempt"' "$T/one" && fail "seq 2 came as a redelivery: $(cat "$T/one")"
# Seq 3 as well, seq 4 after it.
pub 3
pub 4
lost
lost
one
grep -q '"seq":4,' "$T/one" || fail "after the second dead letter: $(cat "$T/one")"

"$CLI" deadletters list --name work >"$T/list"
grep -q '^{"op":"list","subscription":"work","total":2,"dead_letters":\[{"seq":1,"attempts":2,' "$T/list" ||
    fail "list: $(cat "$T/list")"
grep -q '"reason":"not acknowledged before its session ended","redrive":false,"gone":false,' "$T/list" ||
    fail "list reason: $(cat "$T/list")"
grep -q '"type":"tax.return.filed","source":"tax-office","event_id":"' "$T/list" || fail "list event: $(cat "$T/list")"
grep -q '{"seq":3,"attempts":2,' "$T/list" || fail "list seq 3: $(cat "$T/list")"
grep -q '"next_after"' "$T/list" && fail "list of everything has next_after: $(cat "$T/list")"
"$CLI" deadletters list --name work --limit 1 >"$T/page"
grep -q '"dead_letters":\[{"seq":1,.*\],"next_after":1}$' "$T/page" || fail "page 1: $(cat "$T/page")"
"$CLI" deadletters list --name work --after 1 >"$T/page"
grep -q '"total":2,"dead_letters":\[{"seq":3,[^]]*\]}$' "$T/page" || fail "page 2: $(cat "$T/page")"
"$CLI" deadletters list --name other >"$T/page"
[ "$(cat "$T/page")" = '{"op":"list","subscription":"other","total":0,"dead_letters":[]}' ] ||
    fail "list of another subscription: $(cat "$T/page")"
"$CLI" status --json | grep -q '"name":"work".*"redeliveries":2,"dead_letters":2' ||
    fail "status: $("$CLI" status --json)"
grep -q 'event=dead_letter agency=tax-office subscription=work seq=1 attempts=2 cause=session_ended' "$T/hub.log" ||
    fail "no dead_letter log line"

# Redrive seq 1: the next session gets it first; printed and acknowledged, it is gone.
"$CLI" deadletters redrive --name work --seq 1 >"$T/out"
[ "$(cat "$T/out")" = '{"op":"redrive","subscription":"work","total":2,"affected":1,"not_found":[],"gone":[]}' ] ||
    fail "redrive: $(cat "$T/out")"
one
grep -q '"seq":1,' "$T/one" || fail "redriven: $(cat "$T/one")"
"$CLI" deadletters list --name work >"$T/list"
grep -q '"total":1,"dead_letters":\[{"seq":3,' "$T/list" || fail "after the redrive: $(cat "$T/list")"

# Drop: a seq that is no dead letter exits 1 and says so; --all takes the rest.
rc=0
"$CLI" deadletters drop --name work --seq 3,5 >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "drop of a missing seq exited $rc, not 1"
[ "$(cat "$T/out")" = '{"op":"drop","subscription":"work","total":0,"affected":1,"not_found":[5]}' ] ||
    fail "drop: $(cat "$T/out")"
grep -q 'no dead letter of work' "$T/err" || fail "drop stderr: $(cat "$T/err")"
"$CLI" deadletters drop --name work --all >"$T/out"
[ "$(cat "$T/out")" = '{"op":"drop","subscription":"work","total":0,"affected":0,"not_found":[]}' ] ||
    fail "drop --all: $(cat "$T/out")"

# Usage errors exit 2 and reach no hub.
for args in "frob --name work" "list" "redrive --name work" "drop --name work --all --seq 1" \
    "list --name work --seq 1" "redrive --name work --seq 0" "list --name 'bad name'"; do
    rc=0
    eval "\"$CLI\" deadletters $args" >/dev/null 2>&1 || rc=$?
    [ "$rc" = 2 ] || fail "deadletters $args exited $rc, not 2"
done
"$CLI" deadletters --help | grep -q 'civibus deadletters redrive' || fail "no help"
echo "cli dead-letter check passed"
