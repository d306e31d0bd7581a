#!/usr/bin/env bash
# The shared library exports exactly the functions streamtx.h declares.
#
#   tests/scripts/abi.sh LIBSTREAMTX_SO HEADER_DIR
#
# Exported: `nm -D --defined-only` of the library.  Declared: every function
# declaration that gcc's -aux-info reports for streamtx.h (the compiler's
# own list, so a declaration split over lines or macros is not missed).
# Fails when the library exports anything that is not stx_*, when a declared
# function is not exported (its STX_API is missing), or when an exported
# stx_* function is not declared (an internal one escaped -fvisibility).
set -euo pipefail

lib=$1
incdir=$2
tmp=$(mktemp -d /tmp/stx-abi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# -aux-info is gcc's; clang builds use the gcc on PATH for this listing.
cc=${CC_FOR_AUX:-gcc}
command -v "$cc" >/dev/null || { echo "abi: $cc not found"; exit 1; }

echo '#include <streamtx.h>' >"$tmp/h.c"
"$cc" -I"$incdir" -fsyntax-only -aux-info "$tmp/aux" "$tmp/h.c"
# The declared name is the first identifier followed by " (" after the comment.
grep -F '/streamtx.h:' "$tmp/aux" | perl -ne 'print "$1\n" if m{\*/ .*?\b([A-Za-z_]\w*) \(}' |
  sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u >"$tmp/exported"

fail=0
if [ ! -s "$tmp/declared" ]; then
  echo "FAIL: no function declarations found in $incdir/streamtx.h"
  fail=1
fi
if grep -v '^stx_' "$tmp/exported" >"$tmp/foreign"; then
  echo "FAIL: exported symbols without the stx_ prefix:"
  sed 's/^/  /' "$tmp/foreign"
  fail=1
fi
if comm -23 "$tmp/declared" "$tmp/exported" | grep . >"$tmp/missing"; then
  echo "FAIL: declared in streamtx.h but not exported (STX_API missing?):"
  sed 's/^/  /' "$tmp/missing"
  fail=1
fi
if comm -13 "$tmp/declared" "$tmp/exported" | grep . >"$tmp/extra"; then
  echo "FAIL: exported but not declared in streamtx.h (internal symbols):"
  sed 's/^/  /' "$tmp/extra"
  fail=1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" != "libstreamtx.so.0" ]; then
  echo "FAIL: SONAME is '$soname', not libstreamtx.so.0"
  fail=1
fi
if [ "$fail" -eq 0 ]; then
  echo "abi: $(wc -l <"$tmp/exported") functions exported, all declared in streamtx.h, SONAME $soname"
fi
exit "$fail"
