#!/bin/sh
# test_cli_registry - `civibus registry` on signing keys and the hub's
# published signing key: add with --sign-key-file, rotate with an overlap,
# revoke by key id prefix and --all-sign, list (text and JSON); keygen --hub
# --registry publishes hub-sign.pub, a hub loads that registry (skipping
# hub-sign.pub), and verify --registry checks the hub's log with it.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CLI=${CIVIBUS_CLI:-$ROOT/build/civibus}
HUBD=${CIVIBUSD:-$ROOT/build/civibusd}
T=$(mktemp -d /tmp/civibus-cliregistry-XXXXXX)
hub=""
cleanup() {
    [ -n "$hub" ] && kill "$hub" 2>/dev/null && wait "$hub" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "test_cli_registry: $*" >&2; cat "$T/hub.log" >&2 2>/dev/null || true; exit 1; }
R="--registry $T/reg"

mkdir "$T/reg"
"$CLI" keygen --hub --dir "$T/keys" --registry "$T/reg" >/dev/null
cmp -s "$T/keys/hub-sign.pub" "$T/reg/hub-sign.pub" || fail "keygen --hub --registry did not publish hub-sign.pub"
rc=0
"$CLI" keygen --hub --dir "$T/keys2" --registry "$T/reg" >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "a second keygen --hub --registry exited $rc, not 4 (replaced hub-sign.pub?)"
"$CLI" keygen --agency tax --dir "$T/a1" >/dev/null
"$CLI" keygen --agency tax --dir "$T/a2" >/dev/null
"$CLI" keygen --agency tax --dir "$T/a3" >/dev/null
"$CLI" keygen --agency other --dir "$T/b" >/dev/null

# add records the signing key; list shows it, and the hub's signing key from
# hub-sign.pub (not as an agency entry).
"$CLI" registry add $R --agency tax --key-file "$T/a1/tax.pub" --sign-key-file "$T/a1/tax-sign.pub" >/dev/null
[ "$(grep -c '^sign = ' "$T/reg/tax.pub")" = 1 ] || fail "add: no sign line: $(cat "$T/reg/tax.pub")"
"$CLI" registry list $R >"$T/list"
grep -q ' sign  *[0-9a-f]\{16\}  *valid' "$T/list" || fail "list: no valid signing key: $(cat "$T/list")"
[ "$(grep -c . "$T/list")" = 4 ] || fail "list: not one header, two keys and the hub's: $(cat "$T/list")"
grep -q '^(hub)  *-  *hub-sign  *[0-9a-f]\{16\}  *valid' "$T/list" || fail "list: no hub signing key: $(cat "$T/list")"
id1=$(awk '$1 == "sign" { print $2 }' "$T/list")
[ -n "$id1" ] || fail "list: no signing key id: $(cat "$T/list")"

# A signing key is in use under one agency only.
rc=0
"$CLI" registry add $R --agency other --key-file "$T/b/other.pub" --sign-key-file "$T/a1/tax-sign.pub" \
    >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "add with a used signing key exited $rc, not 1"
grep -q 'signing key .* registered already, for agency tax' "$T/err" || fail "add: $(cat "$T/err")"
[ ! -e "$T/reg/other.pub" ] || fail "add with a used signing key wrote an entry"

# rotate: the new signing key is added, the old one limited to the overlap.
"$CLI" registry rotate $R --agency tax --sign-key-file "$T/a2/tax-sign.pub" --overlap-days 2 >"$T/out"
grep -q "old signing key $id1 stays valid until" "$T/out" || fail "rotate: $(cat "$T/out")"
[ "$(grep -c '^sign = ' "$T/reg/tax.pub")" = 2 ] || fail "rotate: not two sign lines: $(cat "$T/reg/tax.pub")"
grep -q "^sign = .* not-after=" "$T/reg/tax.pub" || fail "rotate: old key not limited: $(cat "$T/reg/tax.pub")"
[ "$(grep -c '^curve = ' "$T/reg/tax.pub")" = 1 ] || fail "rotate of the signing key touched the curve key"
"$CLI" registry rotate $R --agency tax --sign-key-file "$T/a3/tax-sign.pub" --overlap-days 0 >/dev/null
"$CLI" registry list $R >"$T/list"
[ "$(grep -c ' sign .* expired' "$T/list")" = 2 ] || fail "rotate --overlap-days 0: $(cat "$T/list")"
id3=$(awk '$1 == "sign" && $3 == "valid" { print $2 }' "$T/list")
[ -n "$id3" ] || fail "list: no valid new signing key: $(cat "$T/list")"

# revoke one by key id prefix, then all; list --json shows them.
"$CLI" registry revoke $R --agency tax --sign-key "$(echo "$id3" | cut -c1-6)" --reason 'lost laptop' >"$T/out"
grep -q "revoked signing key $id3 of tax" "$T/out" || fail "revoke --sign-key: $(cat "$T/out")"
grep -q "^revoked-sign = .*reason=\"lost laptop\"" "$T/reg/tax.pub" || fail "no revoked-sign line: $(cat "$T/reg/tax.pub")"
"$CLI" registry revoke $R --agency tax --all-sign >/dev/null
[ "$(grep -c '^revoked-sign = ' "$T/reg/tax.pub")" = 3 ] || fail "--all-sign: $(cat "$T/reg/tax.pub")"
[ "$(grep -c '^curve = ' "$T/reg/tax.pub")" = 1 ] || fail "--all-sign revoked the curve key"
"$CLI" registry list $R --json >"$T/json"
grep -q '"sign_keys":\[{"key_id":"' "$T/json" || fail "list --json: $(cat "$T/json")"
[ "$(grep -o '"status":"revoked"' "$T/json" | wc -l)" = 3 ] || fail "list --json statuses: $(cat "$T/json")"
rc=0
"$CLI" registry revoke $R --agency tax --sign-key 0000 --all-sign >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "revoke with two selectors exited $rc, not 2"
rc=0
"$CLI" registry add $R --agency hub-sign --key-file "$T/b/other.pub" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "add --agency hub-sign exited $rc, not 2"

# A signing key that expires within key_expiry_warn_days is warned of at start.
"$CLI" keygen --agency other --dir "$T/b2" >/dev/null
"$CLI" registry add $R --agency other --key-file "$T/b/other.pub" --sign-key-file "$T/b/other-sign.pub" >/dev/null
"$CLI" registry rotate $R --agency other --sign-key-file "$T/b2/other-sign.pub" --overlap-days 3 >/dev/null

# A hub loads the registry holding hub-sign.pub; verify --registry checks its log.
mkfifo "$T/ready"
"$HUBD" --data "$T/data" --listen 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --registry "$T/reg" --key "$T/keys/hub.key" \
    --signing-key "$T/keys/hub-sign.key" --no-sync >"$T/ready" 2>"$T/hub.log" &
hub=$!
read -r line <"$T/ready" || fail "the hub did not start"
line=${line#civibusd ready endpoint=}
export CIVIBUS_HUB="${line%% *}" CIVIBUS_HUB_KEY="$T/keys/hub.pub" CIVIBUS_TIMEOUT=5000
CIVIBUS_KEY="$T/a1/tax.key" "$CLI" publish --type tax.return.filed --data '{"n":1}' >/dev/null ||
    fail "publish refused"
kill -TERM "$hub"
wait "$hub" || fail "the hub did not stop cleanly"
hub=""
grep -q registry_entry_invalid "$T/hub.log" && fail "the hub read hub-sign.pub as an entry"
grep -q 'event=key_expiring agency=other key=.* kind=sign' "$T/hub.log" || fail "no warning of the expiring signing key"
"$CLI" verify --data "$T/data" --registry "$T/reg" >"$T/out" 2>&1 || fail "verify --registry: $(cat "$T/out")"
grep -q '^ok: 1 entries, 1 checkpoints' "$T/out" || fail "verify --registry: $(cat "$T/out")"
rc=0
"$CLI" verify --data "$T/data" --registry "$T/reg" --hub-key "$T/keys/hub-sign.pub" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "verify with --registry and --hub-key exited $rc, not 2"
rc=0
"$CLI" verify --data "$T/data" --registry "$T/b" >/dev/null 2>&1 || rc=$?
[ "$rc" = 4 ] || fail "verify --registry without hub-sign.pub exited $rc, not 4"
echo "cli registry check passed"
