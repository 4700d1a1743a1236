#!/bin/sh
# test_deploy - the deployment files of deploy/: `make install` puts the
# systemd unit, the sysusers.d and tmpfiles.d files, the sample
# configuration and the Prometheus files where deploy/README.md says, with
# paths rewritten for the prefix, and never overwrites an operator's
# configuration; systemd-analyze accepts the unit and rates its exposure;
# systemd-sysusers and systemd-tmpfiles, run against a scratch root, create
# the user and the directories with the documented modes and owners. The
# systemd checks are skipped, saying so, on a machine without systemd.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
T=$(mktemp -d /tmp/civibus-deploy-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "test_deploy: $*" >&2; exit 1; }

install_to() { # make install arguments...
    make --no-print-directory BUILD=build/install-check "$@" install >"$T/make.log" 2>&1 ||
        { cat "$T/make.log"; fail "make install $* failed"; }
}
check_file() { # path mode
    [ -f "$1" ] || fail "$1 was not installed"
    m=$(stat -c %a "$1")
    [ "$m" = "$2" ] || fail "$1 has mode $m, not $2"
}

# 1. A package-style install: default prefix, into DESTDIR.
R=$T/root
install_to DESTDIR="$R"
unit=$R/usr/local/lib/systemd/system/civibusd.service
check_file "$unit" 644
check_file "$R/usr/local/lib/sysusers.d/civibus.conf" 644
check_file "$R/usr/local/lib/tmpfiles.d/civibus.conf" 644
check_file "$R/usr/local/share/civibus/civibusd.conf" 644
check_file "$R/usr/local/share/civibus/policy.conf" 644
check_file "$R/usr/local/share/civibus/prometheus/prometheus.yml" 644
check_file "$R/usr/local/share/civibus/prometheus/alerts.yml" 644
check_file "$R/etc/civibus/civibusd.conf" 644
[ "$(stat -c %a "$R/etc/civibus")" = 750 ] || fail "/etc/civibus was not created with mode 0750"
check_file "$R/usr/local/bin/civibusd" 755
grep -qx 'ExecStart=/usr/local/bin/civibusd --config /etc/civibus/civibusd.conf' "$unit" ||
    fail "unexpected ExecStart in $unit: $(grep ExecStart= "$unit")"
cmp -s deploy/civibus.sysusers.conf "$R/usr/local/lib/sysusers.d/civibus.conf" || fail "sysusers file differs"
cmp -s deploy/civibus.tmpfiles.conf "$R/usr/local/lib/tmpfiles.d/civibus.conf" || fail "tmpfiles file differs"
cmp -s deploy/civibusd.conf "$R/etc/civibus/civibusd.conf" || fail "sample configuration differs"
cmp -s deploy/prometheus/alerts.yml "$R/usr/local/share/civibus/prometheus/alerts.yml" || fail "alerts.yml differs"

# 2. A reinstall keeps the operator's configuration and the directory's mode.
echo "# edited by the operator" >>"$R/etc/civibus/civibusd.conf"
chmod 0710 "$R/etc/civibus"
install_to DESTDIR="$R"
grep -q '^# edited by the operator$' "$R/etc/civibus/civibusd.conf" || fail "reinstall overwrote civibusd.conf"
[ "$(stat -c %a "$R/etc/civibus")" = 710 ] || fail "reinstall changed the mode of /etc/civibus"

# 3. A private prefix: everything under it, and the unit points there.
P=$T/opt
install_to PREFIX="$P"
punit=$P/lib/systemd/system/civibusd.service
grep -qx "ExecStart=$P/bin/civibusd --config $P/etc/civibus/civibusd.conf" "$punit" ||
    fail "unexpected ExecStart in $punit: $(grep ExecStart= "$punit")"
check_file "$P/etc/civibus/civibusd.conf" 644
grep -Eq "^d +$P/etc/civibus/registry +0750 +root +civibus " "$P/lib/tmpfiles.d/civibus.conf" ||
    fail "tmpfiles file not rewritten for the prefix"

# 4. systemd's own tools on the installed files.
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v systemd-sysusers >/dev/null 2>&1 ||
    ! command -v systemd-tmpfiles >/dev/null 2>&1; then
    echo "test_deploy: SKIPPED the systemd checks: systemd-analyze, systemd-sysusers or systemd-tmpfiles" \
        "not found (Debian package systemd)"
    echo "deploy check passed (without systemd)"
    exit 0
fi
# The private prefix's unit names a binary that exists, as verify requires.
systemd-analyze verify "$punit" >"$T/verify.log" 2>&1 || { cat "$T/verify.log"; fail "systemd-analyze verify failed"; }
if grep -q 'civibusd' "$T/verify.log"; then
    cat "$T/verify.log"
    fail "systemd-analyze verify complained about the unit"
fi
systemd-analyze security --offline=yes --threshold=20 "$punit" >"$T/security.log" 2>&1 ||
    { cat "$T/security.log"; fail "the unit's exposure level is above 2.0"; }
grep 'Overall exposure level' "$T/security.log" | sed 's/^/test_deploy: /'

S=$T/sys
mkdir -p "$S/etc"
systemd-sysusers --root="$S" "$R/usr/local/lib/sysusers.d/civibus.conf" >/dev/null 2>&1 ||
    fail "systemd-sysusers rejected civibus.sysusers.conf"
entry=$(grep '^civibus:' "$S/etc/passwd") || fail "systemd-sysusers made no civibus user"
uid=$(echo "$entry" | cut -d: -f3)
gid=$(echo "$entry" | cut -d: -f4)
[ "$(echo "$entry" | cut -d: -f6)" = /var/lib/civibus ] || fail "civibus's home is not /var/lib/civibus: $entry"
case $(echo "$entry" | cut -d: -f7) in
*/nologin) ;;
*) fail "civibus has a login shell: $entry" ;;
esac
grep -q "^civibus:x:$gid:" "$S/etc/group" || fail "no civibus group with gid $gid"
systemd-tmpfiles --root="$S" --create "$R/usr/local/lib/tmpfiles.d/civibus.conf" ||
    fail "systemd-tmpfiles rejected civibus.tmpfiles.conf"
for d in "/etc/civibus 750 0 $gid" "/etc/civibus/registry 750 0 $gid" "/var/lib/civibus 750 $uid $gid"; do
    set -- $d
    got=$(stat -c '%a %u %g' "$S$1") || fail "$1 was not created"
    [ "$got" = "$2 $3 $4" ] || fail "$1: mode, uid, gid are $got, not $2 $3 $4"
done
echo "deploy check passed"
