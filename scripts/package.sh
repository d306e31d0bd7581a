#!/usr/bin/env bash
# Build the Debian packages of streamtx into a directory.
#
#   scripts/package.sh [OUT_DIR]     (default: build-deb/debs)
#
# Configures build-deb/ (RelWithDebInfo, prefix /usr so that the library
# goes to the multiarch directory, no tests, examples or benchmarks),
# builds it and runs `cpack -G DEB`, which writes three packages:
#   libstreamtx0     libstreamtx.so.0
#   libstreamtx-dev  streamtx.h, libstreamtx.so, libstreamtx.a, streamtx.pc,
#                    the CMake package (find_package(streamtx))
#   streamtx-tools   stx and its man page
# Install them with: apt-get install ./OUT_DIR/*.deb
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
out=${1:-build-deb/debs}
mkdir -p "$out"
out=$(cd "$out" && pwd)

bash scripts/deps.sh package

cmake -S "$root" -B "$root/build-deb" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_INSTALL_PREFIX=/usr -DSTX_SANITIZE=OFF -DSTX_BUILD_TESTS=OFF \
  -DSTX_BUILD_EXAMPLES=OFF -DSTX_BUILD_BENCH=OFF -DSTX_FUZZ=OFF
cmake --build "$root/build-deb" -j"$(nproc 2>/dev/null || echo 2)"
(cd "$root/build-deb" && cpack -G DEB -B "$out")
rm -rf "$out/_CPack_Packages"
ls -l "$out"/*.deb
