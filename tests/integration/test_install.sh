#!/bin/sh
# test_install - `make install`, then build the SDK example against the
# installed library through pkg-config (shared and static) and run both
# against a real hub started from the installed civibusd.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
T=$(mktemp -d /tmp/civibus-install-XXXXXX)
hub=""
cleanup() {
    [ -n "$hub" ] && kill "$hub" 2>/dev/null && wait "$hub" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

make --no-print-directory BUILD=build/install-check PREFIX="$T/usr" install >"$T/make.log" 2>&1 ||
    { cat "$T/make.log"; exit 1; }
export PKG_CONFIG_PATH="$T/usr/lib/pkgconfig"
cc -Wall -Wextra -Werror adapters/sdk/examples/hello.c $(pkg-config --cflags --libs civibus) -o "$T/hello"
cc -Wall -Wextra -Werror adapters/sdk/examples/hello.c $(pkg-config --cflags civibus) \
    "$T/usr/lib/libcivibus.a" $(pkg-config --static --libs-only-l civibus | sed 's/-lcivibus//') -o "$T/hello-static"

"$T/usr/bin/civibus" keygen --hub --dir "$T/keys" >/dev/null
mkdir "$T/registry"
"$T/usr/bin/civibus" keygen --agency example --dir "$T/keys" --registry "$T/registry" >/dev/null
mkfifo "$T/ready"
"$T/usr/bin/civibusd" --data "$T/data" --listen 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --registry "$T/registry" \
    --key "$T/keys/hub.key" --no-sync >"$T/ready" 2>"$T/hub.log" &
hub=$!
read -r line <"$T/ready"
line=${line#civibusd ready endpoint=}
export CIVIBUS_HUB="${line%% *}" CIVIBUS_HUB_KEY="$T/keys/hub.pub"
export CIVIBUS_KEY="$T/keys/example.key"
LD_LIBRARY_PATH="$T/usr/lib" timeout 30 "$T/hello"
timeout 30 "$T/hello-static"
ldd "$T/hello-static" | grep -q libcivibus && { echo "static build links libcivibus.so"; exit 1; }
echo "install check passed"
