#!/bin/sh
# embed.sh - turn a file into C source holding its bytes, for the build.
#
# usage: embed.sh SYMBOL FILE HEADER > OUT.c
# Writes `const char SYMBOL[]` (the file's bytes and a terminating NUL, so that
# a text file can also be used as a string) and `const size_t SYMBOL_len` (the
# file's size, without the NUL), after an #include of HEADER, which declares
# both, so that the compiler checks that declaration and definition agree. The Makefile compiles hub/www/status.html into
# civibusd this way. Only od, sed and wc are needed, which every POSIX system
# has: no xxd, no compiler-specific #embed.
set -eu
[ $# -eq 3 ] || { echo "usage: embed.sh SYMBOL FILE HEADER > OUT.c" >&2; exit 2; }
symbol=$1
file=$2
header=$3
case $symbol in
'' | [0-9]* | *[!A-Za-z0-9_]*) echo "embed.sh: '$symbol' is not a C identifier" >&2; exit 2 ;;
esac
[ -r "$file" ] || { echo "embed.sh: cannot read $file" >&2; exit 1; }
size=$(wc -c <"$file" | tr -d ' ')

echo "/* Generated from $file by embed.sh; edit that file, not this one. */"
echo "#include \"$header\""
echo
echo "const char ${symbol}[] = {"
od -An -v -tx1 "$file" | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g' -e 's/^/    /'
echo "    0x00};"
echo "const size_t ${symbol}_len = $size;"
