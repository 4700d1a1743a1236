#!/bin/sh
# install-deps.sh - install what civibus needs from Debian's archive.
#
# usage: install-deps.sh [test] [memcheck] [fuzz]
# Without arguments: what building and `make demo` need. The extras add what
# the test suite needs (make test: cmocka; prometheus for promtool, which
# checks the metrics and unit-tests deploy/prometheus; chromium, curl, jq and
# procps for the test of the status page), valgrind (make memcheck) or clang
# with libFuzzer (make fuzz), so that the demo does not download a browser.
# Idempotent: checks each package with dpkg and calls apt-get only for the
# missing ones, so a machine that has everything hears nothing from it.
# Needs root (or sudo) only when something is missing.
set -eu

PACKAGES="gcc make pkg-config libzmq3-dev libprotobuf-c-dev protobuf-c-compiler
libssl-dev liblmdb-dev lmdb-utils libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev"
for extra in "$@"; do
    case $extra in
    test) PACKAGES="$PACKAGES libcmocka-dev prometheus chromium curl jq procps" ;;
    memcheck) PACKAGES="$PACKAGES libcmocka-dev valgrind" ;;
    fuzz) PACKAGES="$PACKAGES clang libclang-rt-14-dev" ;;
    *) echo "install-deps: unknown extra '$extra' (test, memcheck, fuzz)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install-deps: missing packages and not root; install as root:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
