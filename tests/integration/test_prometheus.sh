#!/bin/sh
# test_prometheus - the Prometheus files in deploy/prometheus: promtool
# checks the configuration and the alert rules, and runs the rules' unit
# tests (alerts_test.yml: each alert fires where it should and not where it
# should not). Also checks that every alert has a severity, a summary, a
# description and a runbook link to its own section of docs/OPERATIONS.md,
# and is exercised by the unit tests. promtool comes with Debian's
# `prometheus` package, which deploy/install-deps.sh installs.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT/deploy/prometheus"
fail() { echo "test_prometheus: $*" >&2; exit 1; }

command -v promtool >/dev/null 2>&1 ||
    fail "promtool not found: install the Debian package prometheus (sh deploy/install-deps.sh test)"

promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules alerts_test.yml

# Each alert's block (up to the next rule) must carry what an operator
# needs; the runbook anchor is "alert-" and the name in lower case.
alerts=$(sed -n 's/^ *- alert: *\([A-Za-z0-9]*\) *$/\1/p' alerts.yml)
[ -n "$alerts" ] || fail "no alerts found in alerts.yml"
n=0
for a in $alerts; do
    n=$((n + 1))
    block=$(awk -v name="$a" '
        /^ *- (alert|record):/ { on = ($0 ~ ("- alert: *" name " *$")) }
        on { print }' alerts.yml)
    anchor=$(echo "$a" | tr 'A-Z' 'a-z')
    echo "$block" | grep -Eq '^ +severity: (critical|warning)$' || fail "$a: no severity critical|warning"
    echo "$block" | grep -q '^ *summary: "' || fail "$a: no summary"
    echo "$block" | grep -q '^ *description: "' || fail "$a: no description"
    echo "$block" | grep -q "^ *runbook_url: \"docs/OPERATIONS.md#alert-$anchor\"\$" ||
        fail "$a: no runbook_url docs/OPERATIONS.md#alert-$anchor"
    grep -q "alertname: $a\$" alerts_test.yml || fail "$a: not tested in alerts_test.yml"
done
echo "prometheus check passed: $n alerts"
