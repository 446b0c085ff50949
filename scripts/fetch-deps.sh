#!/usr/bin/env bash
# fetch-deps.sh: unpack Debian's cmocka, libinih and cJSON into .deps/ (ignored by git), for a
# GPU machine that has no apt. Run here, then carry .deps with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libcmocka0 libcmocka-dev libinih-dev libcjson1 libcjson-dev >/dev/null)
mkdir -p .deps/cmocka .deps/inih .deps/cjson
for f in "$tmp"/libcmocka*.deb; do dpkg -x "$f" .deps/cmocka; done
dpkg -x "$tmp"/libinih-dev*.deb .deps/inih
for f in "$tmp"/libcjson*.deb; do dpkg -x "$f" .deps/cjson; done
rm -rf "$tmp"
echo "fetch-deps: cmocka, libinih and cJSON unpacked into .deps/"
