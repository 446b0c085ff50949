#!/usr/bin/env bash
# test_cli.sh: the command line as a user meets it. A short training run of each
# shipped config writes config.ini, metrics.jsonl, summary.json and checkpoints; a run
# stopped by SIGINT and resumed ends with the weights of an uninterrupted one; eval and
# info read checkpoints; mistakes in the command line, the config or a checkpoint give
# a non-zero exit and a message naming the file and what was wrong.
# Usage: test_cli.sh BUILD_DIR SOURCE_DIR
set -u
# shellcheck source=cli_checks.sh
. "$(dirname "$0")/cli_checks.sh"

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

# ---- checkpoints: SIGINT and resume, eval, info, bad checkpoints ---------------------
tensors_equal() { # tensors_equal CKPT_A CKPT_B: every tensor's values agree
    local t
    for t in $("$bin" info "$1" | awk '/^  / {print $1}'); do
        cmp -s <("$bin" info "$1" --tensor "$t") <("$bin" info "$2" --tensor "$t") || { echo "  $t differs"; return 1; }
    done
}
wait_for_lines() { # wait_for_lines FILE N: until FILE has N lines (at most 60 s)
    for _ in $(seq 600); do
        [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
if [ -d /usr/share/datasets/fashion-mnist ]; then
    cfg="$src/configs/fashion_resnet20_int8.ini"
    run=(train "$cfg" --set model.name=resnet8 --set data.limit_train=4096 --set data.limit_test=128
         --set train.batch=32 --set train.epochs=2 --set train.lr_boundaries= --set train.lr_multipliers=1
         --set train.g_scale=128 --set train.log_every=1)
    "$bin" "${run[@]}" --out "$tmp/whole" >/dev/null 2>"$tmp/whole.err"
    check "checkpoints: uninterrupted run exit 0" [ $? -eq 0 ]
    check "checkpoints: latest, best and a step file" test -s "$tmp/whole/latest.safetensors" -a \
        -s "$tmp/whole/best.safetensors" -a -s "$tmp/whole/checkpoints/step_00000256.safetensors"

    "$bin" "${run[@]}" --out "$tmp/sig" >/dev/null 2>"$tmp/sig.err" &
    pid=$!
    wait_for_lines "$tmp/sig/metrics.jsonl" 5
    kill -INT $pid
    wait $pid
    check "SIGINT: exit 130" [ $? -eq 130 ]
    check "SIGINT: a checkpoint, no summary" test -s "$tmp/sig/latest.safetensors" -a ! -e "$tmp/sig/summary.json"
    check "SIGINT: says how to resume" grep -q -- "--resume $tmp/sig" "$tmp/sig.err"
    check "SIGINT: no temporary files" [ -z "$(find "$tmp/sig" -name '*.tmp.*')" ]
    "$bin" "${run[@]}" --resume "$tmp/sig" >/dev/null 2>"$tmp/resume.err"
    check "resume: exit 0" [ $? -eq 0 ]
    check "resume: says where it resumed" grep -q "resuming from $tmp/sig/latest.safetensors at step" "$tmp/resume.err"
    check "resume: the weights of the uninterrupted run" tensors_equal "$tmp/whole/latest.safetensors" "$tmp/sig/latest.safetensors"

    "$bin" "${run[@]}" --out "$tmp/sig2" >/dev/null 2>"$tmp/sig2.err" &
    pid=$!
    wait_for_lines "$tmp/sig2/metrics.jsonl" 3
    kill -INT $pid
    kill -INT $pid
    wait $pid
    check "two signals: exit 130" [ $? -eq 130 ]
    check "two signals: no temporary files" [ -z "$(find "$tmp/sig2" -name '*.tmp.*')" ]
    if [ -e "$tmp/sig2/latest.safetensors" ]; then
        check "two signals: the checkpoint is whole" "$bin" info "$tmp/sig2/latest.safetensors" >/dev/null
    fi

    "$bin" eval "$cfg" --set model.name=resnet8 --set data.limit_train=4096 --set data.limit_test=128 \
        --set train.batch=32 --checkpoint "$tmp/whole" --json "$tmp/eval.json" >"$tmp/eval.out" 2>&1
    check "eval: exit 0" [ $? -eq 0 ]
    check "eval: prints top-1 and top-5" grep -q "top-1 .*top-5" "$tmp/eval.out"
    top1=$(grep -o '"top1":[^,}]*' "$tmp/eval.json" | grep -o '[0-9.]*$')
    acc=$(grep -o '"test_acc": [0-9.]*' "$tmp/whole/summary.json" | grep -o '[0-9.]*$')
    check "eval: the test accuracy training reported ($top1 vs $acc)" awk -v a="$top1" -v b="$acc" \
        'BEGIN {exit !(a != "" && (a - b < 1e-6 && b - a < 1e-6))}'
    "$bin" info "$tmp/whole" >"$tmp/info.out"
    check "info: exit 0" [ $? -eq 0 ]
    check "info: position and tensors" grep -q "position: step 256, after epoch 2" "$tmp/info.out"

    "$bin" "${run[@]}" --out "$tmp/whole" >/dev/null 2>"$tmp/inuse.err"
    check "run directory in use: exit 2" [ $? -eq 2 ]
    check "run directory in use: says what to do" grep -q "already holds a run.*--resume.*--overwrite" "$tmp/inuse.err"
    sum_before=$(md5sum <"$tmp/whole/latest.safetensors")
    head -c 3000 "$tmp/whole/latest.safetensors" >"$tmp/cut.safetensors"
    "$bin" info "$tmp/cut.safetensors" >/dev/null 2>"$tmp/cut.err"
    check "truncated checkpoint, info: exit 1" [ $? -eq 1 ]
    check "truncated checkpoint, info: names the file" grep -q "$tmp/cut.safetensors" "$tmp/cut.err"
    "$bin" "${run[@]}" --resume "$tmp/cut.safetensors" --out "$tmp/whole" >/dev/null 2>"$tmp/cutr.err"
    check "truncated checkpoint, resume: exit 2" [ $? -eq 2 ]
    check "truncated checkpoint, resume: names the file" grep -q "$tmp/cut.safetensors" "$tmp/cutr.err"
    "$bin" "${run[@]}" --set model.name=plaincnn --resume "$tmp/whole" >/dev/null 2>"$tmp/model.err"
    check "another model's checkpoint: exit 2" [ $? -eq 2 ]
    check "another model's checkpoint: names a tensor" grep -q "tensor '.*'" "$tmp/model.err"
    check "refused resumes leave the checkpoint as it was" [ "$(md5sum <"$tmp/whole/latest.safetensors")" = "$sum_before" ]
    "$bin" eval "$cfg" --checkpoint "$tmp/none.safetensors" >/dev/null 2>"$tmp/none.err"
    check "eval of a missing checkpoint: exit 1, named" grep -q "$tmp/none.safetensors: cannot open" "$tmp/none.err"
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

# --device cuda where no GPU is usable (CI: no driver; or a build without CUDA): exit 2, why
if ! "$bin" devices 2>/dev/null | grep -q "compute capability"; then
    "$bin" train "$src/configs/fashion_resnet20_int8.ini" --device cuda --out "$tmp/dev" >/dev/null 2>"$tmp/dev.err"
    check "--device cuda without a usable GPU: exit 2" [ $? -eq 2 ]
    check "--device cuda without a usable GPU: says why" grep -q "\[train\] device = cuda, but" "$tmp/dev.err"
fi
"$bin" train "$src/configs/fashion_resnet20_int8.ini" --device gpu >/dev/null 2>"$tmp/devname.err"
check "--device gpu: exit 2" [ $? -eq 2 ]
check "--device gpu: the choices" grep -q "expected one of cpu | cuda | auto" "$tmp/devname.err"

"$bin" train --bogus >/dev/null 2>"$tmp/opt.err"
check "unknown option: exit 2" [ $? -eq 2 ]
"$bin" frobnicate >/dev/null 2>&1
check "unknown command: exit 2" [ $? -eq 2 ]

finish
