#!/bin/sh
# demo.sh - a civibus hub with three example agencies, end to end.
#
# usage: deploy/demo.sh [BUILD_DIR]   (make demo runs it)
# Generates development keys under certs/dev/ (git-ignored, fresh each run),
# starts civibusd on loopback with a fresh data directory, and walks through
# publish -> live delivery -> consumer restart resuming from its cursor ->
# replay -> status -> clean shutdown. Every process it starts is stopped on exit.
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
HUBD="$ROOT/$BUILD/civibusd"
CLI="$ROOT/$BUILD/civibus"
KEYS="$ROOT/certs/dev"
WORK="$ROOT/$BUILD/demo"
POP=population-register
TAX=tax-office
MUN=municipality

hub_pid=""
tail_pids=""
cleanup() {
    for p in $tail_pids $hub_pid; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { sed 's/^/   /' "$@"; }

step "1. Development keys for the hub and three agencies (certs/dev/, never committed)"
rm -rf "$KEYS" "$WORK"
mkdir -p "$KEYS/registry" "$WORK"
"$CLI" keygen --hub --dir "$KEYS" >/dev/null
for a in $POP $TAX $MUN; do
    "$CLI" keygen --agency "$a" --dir "$KEYS" --registry "$KEYS/registry" >/dev/null
done
ls "$KEYS" "$KEYS/registry" | sed 's/^/   /'

step "2. Start civibusd on loopback (durable: every commit fsynced; access policy deploy/policy.conf; signed checkpoints)"
mkfifo "$WORK/ready"
"$HUBD" --data "$WORK/data" --listen 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --registry "$KEYS/registry" \
    --key "$KEYS/hub.key" --policy "$ROOT/deploy/policy.conf" --signing-key "$KEYS/hub-sign.key" \
    --checkpoint-events 4 >"$WORK/ready" 2>"$WORK/hub.log" &
hub_pid=$!
read -r ready <"$WORK/ready"
endpoint=${ready#civibusd ready endpoint=}
endpoint=${endpoint%% *}
http=${ready##* http=}
echo "   $ready (pid $hub_pid)"
export CIVIBUS_HUB="$endpoint" CIVIBUS_HUB_KEY="$KEYS/hub.pub"

as() { # as AGENCY civibus-args...
    a=$1
    shift
    CIVIBUS_KEY="$KEYS/$a.key" "$CLI" "$@"
}

step "3. The tax office and the municipality subscribe (live, durable subscriptions)"
# env execs civibus, so $! is the consumer itself and can be stopped by PID.
env CIVIBUS_KEY="$KEYS/$TAX.key" "$CLI" tail --name births --filter 'population.birth.*' --from first \
    >"$WORK/tax.jsonl" 2>"$WORK/tax.err" &
tax_pid=$!
env CIVIBUS_KEY="$KEYS/$MUN.key" "$CLI" tail --name residents --filter 'population.*' --from first \
    >"$WORK/mun.jsonl" 2>"$WORK/mun.err" &
mun_pid=$!
tail_pids="$tax_pid $mun_pid"
echo "   tax-office:   civibus tail --name births --filter 'population.birth.*'"
echo "   municipality: civibus tail --name residents --filter 'population.*'"
sleep 1

step "4. The population register publishes four events (JSON lines in, one ack per line out)"
cat >"$WORK/batch1.jsonl" <<'JSON'
{"type":"population.birth.registered","subject":"person/38001010001","data":{"name":"Mari Tamm","born":"2026-11-20","municipality":"Tartu"}}
{"type":"population.address.changed","subject":"person/37605030299","data":{"street":"Rüütli 12","city":"Tartu"}}
{"type":"population.birth.registered","subject":"person/38001010002","data":{"name":"Jaan Kask","born":"2026-11-21","municipality":"Tallinn"}}
{"type":"population.death.registered","subject":"person/34501010011","data":{"date":"2026-11-22"}}
JSON
show "$WORK/batch1.jsonl"
echo "   acks:"
as $POP publish --stdin <"$WORK/batch1.jsonl" | show
sleep 1
echo "   the tax office received (births only):"
show "$WORK/tax.jsonl"
echo "   the municipality received (everything about population):"
show "$WORK/mun.jsonl"

step "5. The municipality's consumer stops; two more events are published meanwhile"
kill "$mun_pid"
wait "$mun_pid" 2>/dev/null || true
tail_pids="$tax_pid"
as $POP publish --type population.address.changed --subject person/38001010001 \
    --data '{"street":"Vanemuise 7","city":"Tartu"}' | sed 's/^/   seq /'
as $POP publish --type population.birth.registered --subject person/38001010003 \
    --data '{"name":"Liis Saar","born":"2026-11-23","municipality":"Narva"}' | sed 's/^/   seq /'

step "6. The municipality's consumer comes back and resumes from its saved cursor"
timeout 30 env CIVIBUS_KEY="$KEYS/$MUN.key" "$CLI" tail --name residents --filter 'population.*' --count 2 | show

step "7. The access policy: the tax office may not publish population events..."
as $TAX publish --type population.birth.registered --subject person/1 --data '{}' 2>&1 | show || true
echo "   ...and replaying the log from sequence 1, it sees only what it may receive (births):"
as $TAX replay --from seq:1 | show

step "8. Hub status: an agency's own view, then the operator's (the same data as /api/status)"
as $POP status | show
sleep 1.2 # the hub renders its monitoring documents once a second
"$CLI" status --http "$http" | show
echo "   Operators: the status page is at http://$http/ (metrics at /metrics) while the hub runs."

echo "   An auditor at the tax office keeps the hub's signed checkpoints outside the hub:"
as $TAX checkpoint fetch --out "$WORK/tax-office.witness" --hub-sign-key "$KEYS/hub-sign.pub" 2>&1 | show

step "9. Clean shutdown (SIGTERM: finish the commit in flight, save cursors, close the log)"
kill "$tax_pid"
wait "$tax_pid" 2>/dev/null || true
tail_pids=""
kill -TERM "$hub_pid"
rc=0
wait "$hub_pid" || rc=$?
hub_pid=""
echo "   civibusd exited with status $rc; its log:"
tail -n 6 "$WORK/hub.log" | show

step "10. Anyone holding the hub's public signing key can prove the log untampered, offline"
echo "   (and, with the tax office's witness file, that it was not cut back or rewritten since)"
"$CLI" verify --data "$WORK/data" --hub-key "$KEYS/hub-sign.pub" --witness "$WORK/tax-office.witness" 2>&1 | show
echo
echo "Demo done. Keys: certs/dev/  Data and logs: $BUILD/demo/"
