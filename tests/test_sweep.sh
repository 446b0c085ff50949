#!/usr/bin/env bash
# test_sweep.sh: `wageubn sweep` and `wageubn plot` as a user meets them. A 2x2 sweep of
# tiny runs writes results.csv/results.md that agree with each point's summary.json;
# run again it skips every point; a point whose run was cut short resumes from its
# checkpoint, a deleted point reruns, a failing point is recorded and the others run;
# SIGTERM stops the sweep after the running point, which resumes next time. Keys tied
# to one axis get their values. Mistakes in a sweep file give exit 2 naming file:line
# before anything runs. plot draws a PNG of two point directories and names file:line
# of a malformed metrics.jsonl.
# Usage: test_sweep.sh BUILD_DIR SOURCE_DIR
set -u
# shellcheck source=cli_checks.sh
. "$(dirname "$0")/cli_checks.sh"
cd "$tmp" || exit 1
json_num() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\).*/\1/p" "$1"; } # json_num FILE KEY
csv_col() { awk -F, -v r="$2" -v c="$3" 'NR == r + 1 { print $c }' "$1"; } # csv_col FILE ROW COL
same_pct() { awk -v a="$1" -v b="$2" 'BEGIN { d = a * 100 - b; exit !(b != "" && d < 1e-3 && d > -1e-3) }'; }
is_png() { [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

# The sweep file lives in sweeps/, its base in base/: base is relative to the sweep file.
mkdir -p sweeps base
cp "$src/configs/fashion_resnet20_int8.ini" base/int8.ini
tiny_set='model.name = plaincnn
data.limit_test = 128
train.lr_boundaries = ""
train.lr_multipliers = 1
train.g_scale = 128
train.log_every = 1
train.threads = 1'
cat >sweeps/tiny.ini <<EOF
; a 2x2 sweep of tiny runs (2 epochs of 2 steps)
[sweep]
base = ../base/int8.ini
out = runs/tiny
[set]
$tiny_set
data.limit_train = 256
train.epochs = 2
[grid]
quant.preset = full, reference
train.lr = "0.4", 0.8 ; a quoted value too
EOF

"$bin" sweep sweeps/tiny.ini --dry-run >dry.out 2>dry.err
check "dry run: exit 0" [ $? -eq 0 ]
check "dry run: lists the 4 point directories" [ "$(grep -c 'runs/tiny/00[1-4]_preset=' dry.out)" -eq 8 ]
check "dry run: names point 4" grep -q "runs/tiny/004_preset=reference_lr=0.8" dry.out
check "dry run: runs nothing" [ ! -e runs/tiny ]

if [ -d /usr/share/datasets/fashion-mnist ]; then
    want=("1 full 0.4" "2 full 0.8" "3 reference 0.4" "4 reference 0.8")
    "$bin" sweep sweeps/tiny.ini >run1.out 2>run1.err
    check "sweep: exit 0" [ $? -eq 0 ]
    csv=runs/tiny/results.csv
    check "results.csv: header and 4 rows" [ "$(wc -l <"$csv")" -eq 5 ]
    check "results.csv: header" grep -q "^point,quant.preset,train.lr,test_acc_pct,val_acc_pct,train_img_per_s,wall_s,status,dir$" "$csv"
    check "results.md: 4 rows" [ "$(grep -c '^| [1-4] |' runs/tiny/results.md)" -eq 4 ]
    check "sweep.ini written" grep -q "^quant.preset = \"full\", \"reference\"$" runs/tiny/sweep.ini
    check "sweep.ini is a sweep file of the same points" \
        [ "$("$bin" sweep runs/tiny/sweep.ini --dry-run 2>/dev/null | grep -c '\[done\] *runs/tiny/00[1-4]_')" -eq 4 ]
    check "progress line per point" grep -q "sweep: point 2/4 (preset=full lr=0.8) ... done" run1.err
    for r in 1 2 3 4; do
        read -r n preset lr <<<"${want[$((r - 1))]}"
        dir=$(csv_col "$csv" "$r" 9)
        check "row $r: point, preset, lr" [ "$(csv_col "$csv" "$r" 1),$(csv_col "$csv" "$r" 2),$(csv_col "$csv" "$r" 3)" = "$n,$preset,$lr" ]
        check "row $r: status done" [ "$(csv_col "$csv" "$r" 8)" = done ]
        check "row $r: directory" [ "$dir" = "runs/tiny/00${n}_preset=${preset}_lr=${lr}" ]
        check "row $r: test_acc as in summary.json" same_pct "$(json_num "$dir/summary.json" test_acc)" "$(csv_col "$csv" "$r" 4)"
        check "row $r: no validation split, empty val_acc" [ -z "$(csv_col "$csv" "$r" 5)" ]
        check "row $r: the point got its values" grep -q "^lr = $lr$" "$dir/config.ini"
    done
    acc2=$(json_num runs/tiny/002_preset=full_lr=0.8/summary.json test_acc)
    acc3=$(json_num runs/tiny/003_preset=reference_lr=0.4/summary.json test_acc)

    start=$(date +%s)
    "$bin" sweep sweeps/tiny.ini >run2.out 2>run2.err
    check "second sweep: exit 0" [ $? -eq 0 ]
    check "second sweep: 4 skipped" [ "$(grep -c ',skipped-done,' "$csv")" -eq 4 ]
    check "second sweep: fast" [ $(($(date +%s) - start)) -le 10 ]
    check "second sweep: nothing ran" [ "$(cat runs/tiny/*/train.log | grep -c '^# wageubn sweep')" -eq 4 ]

    # point 2 as if killed during its last epoch; point 3 deleted
    p2=runs/tiny/002_preset=full_lr=0.8
    rm "$p2/summary.json"
    ln -f "$p2/checkpoints/step_00000002.safetensors" "$p2/latest.safetensors"
    rm -r runs/tiny/003_preset=reference_lr=0.4
    "$bin" sweep sweeps/tiny.ini >run3.out 2>run3.err
    check "third sweep: exit 0" [ $? -eq 0 ]
    check "third sweep: points 1 and 4 skipped" [ "$(csv_col "$csv" 1 8),$(csv_col "$csv" 4 8)" = "skipped-done,skipped-done" ]
    check "third sweep: points 2 and 3 ran" [ "$(csv_col "$csv" 2 8),$(csv_col "$csv" 3 8)" = "done,done" ]
    check "point 2 resumed from its checkpoint" grep -q -- "--resume $p2" "$p2/train.log"
    check "point 2: same accuracy as the uninterrupted run" [ "$(json_num "$p2/summary.json" test_acc)" = "$acc2" ]
    check "point 3: same accuracy rerun" [ "$(json_num runs/tiny/003_preset=reference_lr=0.4/summary.json test_acc)" = "$acc3" ]

    # the same points with other settings: refused, the earlier runs left alone
    "$bin" sweep sweeps/tiny.ini --set train.batch=64 >/dev/null 2>other.err
    check "changed settings: exit 2" [ $? -eq 2 ]
    check "changed settings: names the key" grep -q "batch = 64, but runs/tiny/001_preset=full_lr=0.4/config.ini has batch = 128" other.err

    # a point that fails: recorded, the others still run, exit 1
    cat >sweeps/fails.ini <<EOF
[sweep]
base = ../base/int8.ini
out = runs/fails
[set]
$tiny_set
data.limit_train = 256
train.epochs = 1
[grid]
data.root = $tmp/no-such-dataset, /usr/share/datasets/fashion-mnist
EOF
    "$bin" sweep sweeps/fails.ini >/dev/null 2>fails.err
    check "failing point: exit 1" [ $? -eq 1 ]
    check "failing point: failed (exit 1)" [ "$(csv_col runs/fails/results.csv 1 7)" = "failed (exit 1)" ]
    check "failing point: the next point ran" [ "$(csv_col runs/fails/results.csv 2 7)" = done ]
    check "failing point: log kept" grep -q "no-such-dataset" runs/fails/001_root=*/train.log

    # SIGTERM while a point runs: forwarded, the point checkpoints, the sweep stops
    cat >sweeps/long.ini <<EOF
[sweep]
base = ../base/int8.ini
out = runs/long
[set]
$tiny_set
data.limit_train = 8192
train.epochs = 2
[grid]
train.lr = 0.4, 0.8
EOF
    "$bin" sweep sweeps/long.ini >/dev/null 2>long.err &
    sweep_pid=$!
    p1=runs/long/001_lr=0.4
    for _ in $(seq 600); do [ -s "$p1/metrics.jsonl" ] || ! kill -0 "$sweep_pid" 2>/dev/null && break; sleep 0.1; done
    kill -TERM "$sweep_pid"
    wait "$sweep_pid"
    check "SIGTERM: exit 1" [ $? -eq 1 ]
    check "SIGTERM: point 1 interrupted" grep -q "^1,0.4,,,,,interrupted" runs/long/results.csv
    check "SIGTERM: point 2 not run" [ "$(csv_col runs/long/results.csv 2 7)" = pending ]
    "$bin" sweep sweeps/long.ini >/dev/null 2>long2.err
    check "after SIGTERM: the sweep completes" [ $? -eq 0 ]
    check "after SIGTERM: point 1 resumed" grep -q -- "--resume $p1" "$p1/train.log"

    if command -v gnuplot >/dev/null; then
        "$bin" plot runs/tiny/001_preset=full_lr=0.4 runs/tiny/003_preset=reference_lr=0.4 --out two.png \
            --title "two points" --keep-script >plot.out 2>plot.err
        check "plot: exit 0" [ $? -eq 0 ]
        check "plot: a PNG" is_png two.png
        check "plot: the script kept" grep -q "001_preset=full_lr=0.4 test" two.gp
        rm two.png
        gnuplot two.gp 2>/dev/null
        check "plot: the kept script redraws the PNG" is_png two.png
        "$bin" plot runs/tiny/004_preset=reference_lr=0.8 >/dev/null 2>&1
        check "plot: one run, default RUN_DIR/curves.png" is_png runs/tiny/004_preset=reference_lr=0.8/curves.png
        check "plot: no script left without --keep-script" [ ! -e runs/tiny/004_preset=reference_lr=0.8/curves.gp ]
    else
        echo "test_sweep: gnuplot is not installed: PNG checks skipped"
    fi
else
    echo "test_sweep: dataset-fashion-mnist is not installed: training runs skipped"
fi

# Keys tied to one axis: a plain value for both, a tuple for one each.
printf '[sweep]\nbase = ../base/int8.ini\nout = runs/tied\n[grid]\ntrain.seed + train.batch = 7, (3, "64")\n' >sweeps/tied.ini
"$bin" sweep sweeps/tied.ini --dry-run >tied.out 2>tied.err
check "tied keys: exit 0" [ $? -eq 0 ]
check "tied keys: a shared value" grep -q "runs/tied/001_seed+batch=7$" tied.out
check "tied keys: a tuple" grep -q "runs/tied/002_seed+batch=3+64$" tied.out
check "tied keys: each key its value" grep -q -- "--set train.seed=3 --set train.batch=64 --out" tied.out

# Mistakes in a sweep file: exit 2, file:line, before any point runs.
refused() { # refused NAME LABEL: `wageubn sweep sweeps/NAME.ini` exits 2; its messages in NAME.err
    "$bin" sweep "sweeps/$1.ini" >/dev/null 2>"$1.err"
    check "$2: exit 2" [ $? -eq 2 ]
}
cat >sweeps/badkey.ini <<EOF
[sweep]
base = ../base/int8.ini
out = runs/badkey
[grid]
quant.preset = full, reference
quant.bitz_e2 = 8, 16
EOF
refused badkey "bad grid key"
check "bad grid key: names file:line and key" grep -q "sweeps/badkey.ini:6: \[grid\] quant.bitz_e2.*did you mean 'bits_e2'" badkey.err
check "bad grid key: nothing ran" [ ! -e runs/badkey ]

printf '[sweep]\nbase = ../base/int8.ini\n[grid]\nquant.bits_e2 = 8, 160\n' >sweeps/badvalue.ini
refused badvalue "bad grid value"
check "bad grid value: names file:line" grep -q "sweeps/badvalue.ini:4: \[grid\] quant.bits_e2, value '160': expected an integer" badvalue.err

printf '[sweep]\nbase = ../base/int8.ini\n[grid]\nquant.bits_e2 = 8, 16\nthis is not ini\n' >sweeps/badline.ini
refused badline "bad line"
check "bad line: names file:line" grep -q "sweeps/badline.ini:5: expected '\[section\]' or 'key = value'" badline.err

# the base has 3 lr multipliers: right for 2 boundaries, not for 1
printf '[sweep]\nbase = ../base/int8.ini\nout = runs/cross\n[grid]\ntrain.lr_boundaries = "2,3", 2\n' >sweeps/cross.ini
refused cross "point that does not load"
check "point that does not load: named" grep -q "point 2/2 (lr_boundaries=2):.*lr_multipliers has 3 values" cross.err
check "point that does not load: nothing ran" [ ! -e runs/cross ]

printf '[sweep]\nbase = ../base/int8.ini\n[set]\ntrain.epochs = 1\n[grid]\n' >sweeps/empty.ini
refused empty "empty grid"
check "empty grid: said" grep -q "the grid is empty" empty.err

"$bin" sweep sweeps/tiny.ini --set quant.preset=full >/dev/null 2>setgrid.err
check "--set of a swept key: exit 2" [ $? -eq 2 ]
"$bin" sweep >/dev/null 2>&1
check "no sweep file: exit 2" [ $? -eq 2 ]

# plot: a malformed line names file:line; no gnuplot is a clear message
mkdir -p fake/a
printf '{"split": "train", "epoch": 0.5, "step": 1, "loss": 2.3, "acc": 0.1, "lr": 0.4, "img_per_s": 100}\n\n{"split": "test", "epoch": 1, "loss": 2.2,\n' >fake/a/metrics.jsonl
"$bin" plot fake/a >/dev/null 2>plotbad.err
check "plot malformed line: exit 1" [ $? -eq 1 ]
check "plot malformed line: names file:line" grep -q "fake/a/metrics.jsonl:3: not a JSON object" plotbad.err
printf '{"split": "train", "epoch": 0.5, "loss": 2.3}\n' >fake/a/metrics.jsonl
"$bin" plot fake/a >/dev/null 2>plotfield.err
check "plot missing field: exit 1 naming it" grep -q "fake/a/metrics.jsonl:1: \"acc\" is missing" plotfield.err
printf '{"split": "train", "epoch": 0.5, "loss": 2.3, "acc": 0.1}\n' >fake/a/metrics.jsonl
mkdir -p empty-path
PATH="$tmp/empty-path" "$bin" plot fake/a >/dev/null 2>nognuplot.err
check "plot without gnuplot: exit 1" [ $? -eq 1 ]
check "plot without gnuplot: says how to install it" grep -q "gnuplot was not found (Debian: apt-get install gnuplot-nox)" nognuplot.err
"$bin" plot >/dev/null 2>&1
check "plot without a run: exit 2" [ $? -eq 2 ]

finish
