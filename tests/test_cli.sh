#!/usr/bin/env bash
# test_cli.sh: the command line as a user meets it. A short training run of each
# shipped config writes config.ini, metrics.jsonl and summary.json; mistakes in the
# command line or the config give exit 2 and a message naming the file and line.
# Usage: test_cli.sh BUILD_DIR SOURCE_DIR
set -u
bin="$1/wageubn"
src="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else echo "FAILED: $name"; fail=$((fail + 1)); fi
}

if [ -d /usr/share/datasets/fashion-mnist ]; then
    for cfg in "$src"/configs/fashion_resnet20_*.ini; do
        name=$(basename "$cfg" .ini)
        "$bin" train "$cfg" --set model.name=plaincnn --set data.limit_train=256 --set data.limit_test=128 \
            --set train.epochs=1 --set train.lr_boundaries= --set train.lr_multipliers=1 --set train.g_scale=128 \
            --set train.log_every=1 --out "$tmp/$name" >"$tmp/$name.out" 2>"$tmp/$name.err"
        check "$name: exit 0" [ $? -eq 0 ]
        check "$name: summary.json has test_acc" grep -q '"test_acc"' "$tmp/$name/summary.json"
        check "$name: metrics.jsonl has a test line" grep -q '"split": "test"' "$tmp/$name/metrics.jsonl"
        check "$name: config.ini written" test -s "$tmp/$name/config.ini"
        check "$name: test accuracy printed" grep -q "test accuracy" "$tmp/$name.err"
    done
else
    echo "test_cli: dataset-fashion-mnist is not installed: training runs skipped"
fi

printf '[train]\nbatch = -3\n' >"$tmp/bad.ini"
"$bin" train "$tmp/bad.ini" >/dev/null 2>"$tmp/bad.err"
check "bad value: exit 2" [ $? -eq 2 ]
check "bad value: names file:line and key" grep -q "bad.ini:2: \[train\] batch = -3" "$tmp/bad.err"

printf '[train]\nepochz = 3\n' >"$tmp/typo.ini"
"$bin" train "$tmp/typo.ini" >/dev/null 2>"$tmp/typo.err"
check "unknown key: exit 2" [ $? -eq 2 ]
check "unknown key: did you mean" grep -q "did you mean 'epochs'" "$tmp/typo.err"

"$bin" train "$tmp/missing.ini" >/dev/null 2>"$tmp/missing.err"
check "missing config: exit 2" [ $? -eq 2 ]
check "missing config: named" grep -q "missing.ini" "$tmp/missing.err"

"$bin" train "$src/configs/fashion_resnet20_int8.ini" --set data.root="$tmp/nodata" >/dev/null 2>"$tmp/nodata.err"
check "missing dataset: exit 1" [ $? -eq 1 ]
check "missing dataset: names the file" grep -q "$tmp/nodata" "$tmp/nodata.err"

"$bin" train --bogus >/dev/null 2>"$tmp/opt.err"
check "unknown option: exit 2" [ $? -eq 2 ]
"$bin" frobnicate >/dev/null 2>&1
check "unknown command: exit 2" [ $? -eq 2 ]

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
