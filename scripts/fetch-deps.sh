#!/usr/bin/env bash
# fetch-deps.sh: unpack Debian's cmocka and libinih into .deps/ (ignored by git), for a
# GPU machine that has no apt. Run here, then carry .deps with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libcmocka0 libcmocka-dev libinih-dev >/dev/null)
mkdir -p .deps/cmocka .deps/inih
for f in "$tmp"/libcmocka*.deb; do dpkg -x "$f" .deps/cmocka; done
dpkg -x "$tmp"/libinih-dev*.deb .deps/inih
rm -rf "$tmp"
echo "fetch-deps: cmocka and libinih unpacked into .deps/"
