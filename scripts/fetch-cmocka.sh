#!/usr/bin/env bash
# fetch-cmocka.sh: unpack Debian's cmocka into .deps/cmocka (ignored by git), for a
# GPU machine that has no apt. Run here, then carry .deps with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libcmocka0 libcmocka-dev >/dev/null)
mkdir -p .deps/cmocka
for f in "$tmp"/*.deb; do dpkg -x "$f" .deps/cmocka; done
rm -rf "$tmp"
echo "fetch-cmocka: cmocka unpacked into .deps/cmocka"
