#!/bin/sh
# test_status_page - the status page at / in headless Chromium against a real
# hub. Three agencies publish, subscribe, lag behind and get refused; then
# the page (as served: byte for byte hub/www/status.html) is loaded until it
# shows live figures, and what it shows (header, totals, every agency and
# subscription row, the refusals, the warnings, the throughput chart) must
# equal /api/status as `civibus status --http --json` reads it before and
# after. A copy of the page opened without the hub must say it is stale. A
# screenshot at 1366x768 is left in BUILD/artifacts/status-page.png for a
# person to look at.
#
# Chromium runs headless with a throwaway profile and HOME under the test's
# temporary directory, under `timeout` (which makes it a process group of its
# own); whatever of that group is left is killed after each run, and so are
# its crash handlers, which leave the group. --dump-dom with a
# virtual time budget returns once the page has run that long in virtual
# time; virtual time does not advance while a fetch is outstanding, so the
# page's fetches of api/status complete within the run.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
CLI=${CIVIBUS_CLI:-$ROOT/build/civibus}
HUBD=${CIVIBUSD:-$ROOT/build/civibusd}
CHROMIUM=${CHROMIUM:-chromium}
ART=$(dirname "$HUBD")/artifacts
T=$(mktemp -d /tmp/civibus-page-XXXXXX)
hub=""
tailer=""
browser=""
# Chromium's crash handlers leave its process group; they exit shortly after
# the browser, and name their database under $T/home on the command line.
# stop_browser waits for them (bounded) and kills what is left, by pid.
crash_handlers() { pgrep -f -- "--database=$T/home/" || true; }
stop_browser() {
    if [ -n "$browser" ]; then kill -KILL -- "-$browser" 2>/dev/null || true; fi
    browser=""
    n=0
    while [ -n "$(crash_handlers)" ] && [ "$n" -lt 50 ]; do
        sleep 0.2
        n=$((n + 1))
    done
    for p in $(crash_handlers); do kill -KILL "$p" 2>/dev/null || true; done
}
cleanup() {
    stop_browser
    if [ -n "$tailer" ]; then kill "$tailer" 2>/dev/null && wait "$tailer" 2>/dev/null || true; fi
    if [ -n "$hub" ]; then kill "$hub" 2>/dev/null && wait "$hub" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "test_status_page: $*" >&2
    sed 's/^/hub: /' "$T/hub.log" >&2 2>/dev/null || true
    exit 1
}
for tool in "$CHROMIUM" curl jq pgrep; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (sh deploy/install-deps.sh test)"
done

# The page stays self-contained and never parses data as HTML.
PAGE=hub/www/status.html
if grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function' "$PAGE"; then
    fail "$PAGE parses strings as HTML or code"
fi
if grep -nEi 'src=|(href|action)="?[a-z]*:|(href|action)="?//|@import|url\(|https?://' "$PAGE" |
    grep -v "'http://www.w3.org/2000/svg'"; then
    fail "$PAGE refers to an external resource"
fi

# run_browser OUT ARG...: one headless Chromium run, stdout to OUT.
run_browser() {
    out=$1
    shift
    HOME="$T/home" XDG_CONFIG_HOME="$T/home/.config" XDG_CACHE_HOME="$T/home/.cache" \
        timeout -k 5 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --no-first-run --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$T/profile" "$@" >"$out" 2>>"$T/chromium.log" </dev/null &
    browser=$!
    brc=0
    wait "$browser" || brc=$?
    stop_browser
    [ "$brc" = 0 ] || fail "chromium exited $brc: $(tail -n 20 "$T/chromium.log")"
}

# dom FIELD: the text of the first element with data-field=FIELD.
dom() { sed -n "s/.*data-field=\"$1\"[^>]*>\([^<]*\)<.*/\1/p" "$T/dom.html" | head -n 1; }
# col ROW COL: the text of the cell data-col=COL of a row (inside its first
# child element, if any: <strong>, <time>).
col() { printf '%s\n' "$1" | sed -n "s/.*data-col=\"$2\"[^>]*>\(<[^>]*>\)*\([^<]*\)<.*/\2/p" | unhtml; }
unhtml() { sed -e 's/&lt;/</g' -e 's/&gt;/>/g' -e 's/&quot;/"/g' -e 's/&amp;/\&/g'; }
# Figures are grouped with narrow no-break spaces: compare the digits.
digits() { printf '%s' "$1" | LC_ALL=C tr -cd '0-9'; }
rows() { grep "data-row=\"$1\"" "$T/rows" || true; }
status() { "$CLI" status --http "$HTTP" --json --timeout 5000 >"$1" || fail "civibus status --http failed"; }
# The figures that stay put while nothing happens (no clock, no rates).
settled() {
    jq -c '{log: (.log | del(.oldest_time)), totals, agencies, subscriptions, refusals,
            warnings: [.warnings[] | del(.time)], ready, connections_open}' "$1"
}

# Keys, a policy, a hub with its HTTP endpoint on a free port.
mkdir "$T/registry" "$T/home"
"$CLI" keygen --hub --dir "$T/keys" --registry "$T/registry" >/dev/null
for a in population-register tax-office municipality; do
    "$CLI" keygen --agency "$a" --dir "$T/keys" --registry "$T/registry" >/dev/null
done
cat >"$T/policy.conf" <<'EOF'
allow population-register publish   population.*
allow tax-office          subscribe population.birth.*
allow municipality        subscribe population.*
EOF
mkfifo "$T/ready"
"$HUBD" --data "$T/data" --listen 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --registry "$T/registry" \
    --key "$T/keys/hub.key" --policy "$T/policy.conf" --subscription-lag-warn 3 --no-sync \
    >"$T/ready" 2>"$T/hub.log" &
hub=$!
read -r line <"$T/ready" || fail "the hub did not start"
case $line in *" http="*) ;; *) fail "no http= in the ready line: $line" ;; esac
HTTP=${line##* http=}
line=${line#civibusd ready endpoint=}
export CIVIBUS_HUB="${line%% *}" CIVIBUS_HUB_KEY="$T/keys/hub.pub" CIVIBUS_TIMEOUT=10000
K=$T/keys

# seq 1; municipality's subscription "audit" takes it and stays behind.
CIVIBUS_KEY=$K/population-register.key "$CLI" publish --type population.birth.registered --event-id ev-1 \
    --data '{"n":1}' >/dev/null
CIVIBUS_KEY=$K/municipality.key timeout 30 "$CLI" tail --name audit --filter 'population.*' --from first \
    --count 1 >"$T/audit.out"
# tax-office stays connected, subscription "main".
CIVIBUS_KEY=$K/tax-office.key "$CLI" tail --name main --filter 'population.birth.*' --from first \
    >"$T/main.out" 2>"$T/main.err" &
tailer=$!
# seq 2-6, a duplicate of seq 1, and a refusal.
printf '%s\n' '{"type":"population.birth.registered","data":2}' '{"type":"population.birth.registered","data":3}' \
    '{"type":"population.address.changed","data":4}' '{"type":"population.birth.registered","data":5}' \
    '{"type":"population.address.changed","data":6}' |
    CIVIBUS_KEY=$K/population-register.key "$CLI" publish --stdin >"$T/acks"
[ "$(grep -c '"seq":' "$T/acks")" = 5 ] || fail "publish --stdin: $(cat "$T/acks")"
CIVIBUS_KEY=$K/population-register.key "$CLI" publish --type population.birth.registered --event-id ev-1 \
    --data '{"n":1}' >/dev/null 2>&1
rc=0
CIVIBUS_KEY=$K/population-register.key "$CLI" publish --type tax.return.filed --data '{}' >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "a publish outside the policy exited $rc, not 1"

# Wait until tax-office has its four births, the hub has counted everything
# and closed its first throughput step, and the figures have settled (two
# reads a second apart agree).
i=0
while :; do
    i=$((i + 1))
    [ "$i" -le 120 ] || fail "the hub's figures did not settle: $(cat "$T/s1.json")"
    status "$T/s1.json"
    if [ "$(grep -c '"seq":' "$T/main.out")" = 4 ] &&
        [ "$(jq -c '[.log.last_seq, .totals.accepted, .totals.duplicates, .totals.refused,
                    (.throughput.accepted | length > 0)]' "$T/s1.json")" = "[6,6,1,1,true]" ]; then
        sleep 1
        status "$T/s2.json"
        [ "$(settled "$T/s1.json")" = "$(settled "$T/s2.json")" ] && break
    fi
    sleep 0.5
done

# The page as served.
curl -sS --max-time 10 -D "$T/headers" -o "$T/page.html" "http://$HTTP/" || fail "GET / failed"
grep -qi '^content-type: text/html' "$T/headers" || fail "GET / is not text/html: $(cat "$T/headers")"
cmp -s "$T/page.html" "$PAGE" || fail "GET / is not $PAGE byte for byte"

# Load it until it shows live figures (each run lets it fetch a few times);
# the screenshot is taken by the same run, of the page that is checked.
mkdir -p "$ART"
status "$T/before.json"
live=""
for attempt in 1 2 3 4 5; do
    rm -f "$ART/status-page.png"
    run_browser "$T/dom.html" --virtual-time-budget=6000 --window-size=1366,768 \
        --screenshot="$ART/status-page.png" --dump-dom "http://$HTTP/"
    if grep -q '<body[^>]* data-state="live"' "$T/dom.html"; then
        live=1
        break
    fi
done
[ -n "$live" ] || fail "the page never showed live figures: $(grep -o 'data-state="[a-z]*"' "$T/dom.html")"
status "$T/after.json"
[ "$(settled "$T/before.json")" = "$(settled "$T/after.json")" ] || fail "the hub's figures moved during the test"
sed -e 's/<tr /\n<tr /g' -e 's/<li /\n<li /g' "$T/dom.html" >"$T/rows"
j() { jq -r "$1" "$T/after.json"; }

# Header and totals.
grep 'data-field="stale_reason"' "$T/dom.html" | grep -q ' hidden' || fail "the stale banner shows while live"
[ "$(dom version)" = "$(j .version)" ] || fail "version: page '$(dom version)', status '$(j .version)'"
[ "$(dom ready)" = ready ] || fail "readiness: page '$(dom ready)', status ready=$(j .ready)"
[ -n "$(digits "$(dom uptime_s)")" ] || fail "no uptime on the page: '$(dom uptime_s)'"
for f in last_seq first_seq entries; do
    [ "$(digits "$(dom $f)")" = "$(j .log.$f)" ] || fail "$f: page '$(dom $f)', status $(j .log.$f)"
done
for f in accepted duplicates refused delivered auth_failures; do
    [ "$(digits "$(dom $f)")" = "$(j .totals.$f)" ] || fail "$f: page '$(dom $f)', status $(j .totals.$f)"
done
[ "$(digits "$(dom connections_open)")" = "$(j .connections_open)" ] ||
    fail "connections: page '$(dom connections_open)', status $(j .connections_open)"

# Agencies: one row each, with their figures.
[ "$(rows agency | wc -l)" = "$(j '.agencies | length')" ] || fail "agency rows: $(rows agency)"
# municipality has neither a connection nor a count: not listed.
[ "$(j '[.agencies[].agency] | join(" ")')" = "population-register tax-office" ] ||
    fail "status lists agencies $(j '[.agencies[].agency] | join(" ")')"
[ "$(digits "$(dom agencies_connected)")" = "$(j '[.agencies[] | select(.connections > 0)] | length')" ] ||
    fail "agencies connected: page '$(dom agencies_connected)'"
j '.agencies[] | "\(.agency) \(.connections) \(.accepted) \(.duplicates) \(.refused)"' >"$T/agencies"
while read -r name conns acc dup ref; do
    row=$(rows agency | grep "data-agency=\"$name\"") || fail "no row for agency $name"
    got="$(col "$row" agency) $(digits "$(col "$row" connections)") $(digits "$(col "$row" accepted)")"
    got="$got $(digits "$(col "$row" duplicates)") $(digits "$(col "$row" refused)")"
    [ "$got" = "$name $conns $acc $dup $ref" ] || fail "agency row '$got', status '$name $conns $acc $dup $ref'"
done <"$T/agencies"
[ "$(col "$(rows agency | grep tax-office)" connections)" = 1 ] || fail "tax-office is not shown connected"

# Subscriptions: one row each; audit lags past subscription_lag_warn.
[ "$(rows subscription | wc -l)" = "$(j '.subscriptions | length')" ] || fail "subscription rows: $(rows subscription)"
[ "$(j '.subscriptions | length')" = 2 ] || fail "status lists $(j '.subscriptions | length') subscriptions, not 2"
j '.subscriptions[] | "\(.agency) \(.name) \(.connected) \(.cursor) \(.lag) \(.in_flight) \(.dead_letters)"' >"$T/subs"
while read -r agency name conn cursor lag inflight dead; do
    row=$(rows subscription | grep "data-agency=\"$agency\" data-name=\"$name\"") ||
        fail "no row for subscription $agency/$name"
    c=no
    [ "$conn" = true ] && c=yes
    got="$(col "$row" connected) $(digits "$(col "$row" cursor)") $(digits "$(col "$row" lag)")"
    got="$got $(digits "$(col "$row" in_flight)") $(digits "$(col "$row" dead_letters)")"
    [ "$got" = "$c $cursor $lag $inflight $dead" ] ||
        fail "subscription $agency/$name: page '$got', status '$c $cursor $lag $inflight $dead'"
done <"$T/subs"
[ "$(j '.subscriptions[] | select(.name == "audit") | .lag')" = 5 ] || fail "audit does not lag by 5"
rows subscription | grep 'data-name="audit"' | grep -q 'data-alert="[^"]*lag-warning' ||
    fail "the lagging subscription is not highlighted: $(rows subscription | grep audit)"

# Refusals and warnings.
[ "$(rows refusal | wc -l)" = "$(j '.refusals | length')" ] || fail "refusal rows: $(rows refusal)"
[ "$(j '.refusals | length')" = 1 ] || fail "status lists $(j '.refusals | length') refusals, not 1"
row=$(rows refusal)
got="$(col "$row" agency)|$(col "$row" code)|$(col "$row" reason)"
want=$(j '.refusals[-1] | "\(.agency)|\(.code)|\(.reason)"')
[ "$got" = "$want" ] || fail "refusal: page '$got', status '$want'"
[ "$(col "$row" code)" = not_authorised ] || fail "refusal code: $(col "$row" code)"
[ "$(rows warning | wc -l)" = "$(j '.warnings | length')" ] || fail "warning rows: $(rows warning)"
[ "$(digits "$(dom warning_count)")" = "$(j '.warnings | length')" ] || fail "warning count: $(dom warning_count)"
row=$(rows warning | grep 'data-kind="subscription_behind"') || fail "no subscription_behind warning on the page"
[ "$(col "$row" message)" = "$(j '.warnings[] | select(.kind == "subscription_behind") | .message')" ] ||
    fail "warning message: page '$(col "$row" message)'"

# Throughput: one point per step, at least one step with accepted events.
pts=$(sed -n 's/.*data-series="accepted" data-points="\([0-9]*\)".*/\1/p' "$T/dom.html")
lo=$(jq '.throughput.accepted | length' "$T/before.json")
hi=$(j '.throughput.accepted | length')
[ -n "$pts" ] && [ "$pts" -ge "$lo" ] && [ "$pts" -le "$hi" ] || fail "chart: ${pts:-no} points, status $lo to $hi steps"
if [ "$(j '.throughput.accepted | max > 0')" = true ] && [ "$pts" = "$hi" ]; then
    [ -n "$(digits "$(dom peak_accepted)" | tr -d 0)" ] || fail "chart: peak accepted '$(dom peak_accepted)'"
fi

# Without the hub the page says it is stale, and why.
run_browser "$T/stale.html" --virtual-time-budget=3000 --dump-dom "file://$T/page.html"
grep -q '<body[^>]* data-state="stale"' "$T/stale.html" || fail "the page without a hub is not stale"
grep 'data-field="stale_reason"' "$T/stale.html" | grep -v ' hidden' | grep -q '>Stale: ' ||
    fail "the page without a hub shows no stale banner"

# The screenshot, for people.
[ "$(od -An -N8 -tx1 "$ART/status-page.png" 2>/dev/null | tr -d ' ')" = 89504e470d0a1a0a ] ||
    fail "no screenshot in $ART/status-page.png"
echo "status page screenshot (1366x768): $ART/status-page.png"
echo "status page check passed"
