#!/usr/bin/env bash
# test_checkpoint_numpy.sh: the numpy snippet of docs/checkpoints.md reads a checkpoint
# that a short training run wrote, and gives every tensor's shape and each value
# (q * 2^exp) exactly as wageubn's own reader does (`wageubn info --tensor`).
# Skipped (exit 77) without a python3 that has numpy, or without dataset-fashion-mnist.
# Usage: test_checkpoint_numpy.sh BUILD_DIR SOURCE_DIR
set -u
bin="$1/wageubn"
src="$2"
py=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import numpy" 2>/dev/null; then py=$p; break; fi
done
[ -n "$py" ] || { echo "test_checkpoint_numpy: no python3 with numpy (Debian: python3-numpy): skipped"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "test_checkpoint_numpy: no dataset-fashion-mnist: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for mode in "train.mode=int8 quant.preset=reference" "train.mode=fp32"; do
    sets=()
    for s in $mode; do sets+=(--set "$s"); done
    "$bin" train "$src/configs/fashion_resnet20_int8.ini" --set model.name=resnet8 --set data.limit_train=128 \
        --set data.limit_test=64 --set train.batch=32 --set train.epochs=1 --set train.lr_boundaries= \
        --set train.lr_multipliers=1 --set train.g_scale=128 "${sets[@]}" --out "$tmp/run" --overwrite \
        >/dev/null 2>"$tmp/train.err" || { cat "$tmp/train.err"; exit 1; }
    ckpt="$tmp/run/latest.safetensors"
    # the doc's block, between its marker line and the closing fence
    awk '/<!-- load_checkpoint:/ {on = 1; next} on && /^```python/ {next} on && /^```/ {exit} on' \
        "$src/docs/checkpoints.md" >"$tmp/snippet.py"
    grep -q "def load_checkpoint" "$tmp/snippet.py" || { echo "FAILED: no snippet found in docs/checkpoints.md"; exit 1; }
    cat >>"$tmp/snippet.py" <<'PY'
import sys
arrays, meta = load_checkpoint(sys.argv[1])
assert meta["format"] == "wageubn-checkpoint", meta.get("format")
for name in sorted(arrays):
    print(name, list(arrays[name].shape), arrays[name].dtype)
for name in sys.argv[2:]:
    with open(sys.argv[1] + "." + name + ".py.txt", "w") as out:
        for v in real_values(arrays, meta, name).ravel():
            out.write("%.17g\n" % v)
PY
    # every tensor's name and shape, as wageubn info lists them
    "$py" "$tmp/snippet.py" "$ckpt" stem fc block0.conv1 head.bn.gamma block0.bn1.running_mean \
        >"$tmp/py.txt" || { echo "FAILED ($mode): the snippet"; exit 1; }
    awk '{d = $2; for (i = 3; i < NF; i++) d = d " " $i; print $1, d}' "$tmp/py.txt" | sed 's/\] *$/]/' | sort \
        >"$tmp/py-shapes.txt"
    "$bin" info "$ckpt" | awk '/^  / {s = ""; for (i = 3; i <= NF - 2; i++) s = s (s ? " " : "") $i; print $1, s}' \
        | sort >"$tmp/c-shapes.txt"
    diff "$tmp/c-shapes.txt" "$tmp/py-shapes.txt" >/dev/null || {
        echo "FAILED ($mode): tensor names and shapes differ:"; diff "$tmp/c-shapes.txt" "$tmp/py-shapes.txt" | head; exit 1; }
    n=$(wc -l <"$tmp/py-shapes.txt")
    [ "$n" -gt 20 ] || { echo "FAILED ($mode): only $n tensors"; exit 1; }
    for t in stem fc block0.conv1 head.bn.gamma block0.bn1.running_mean; do
        "$bin" info "$ckpt" --tensor "$t" >"$tmp/c.txt"
        cmp -s "$tmp/c.txt" "$ckpt.$t.py.txt" || { echo "FAILED ($mode): values of $t differ"; exit 1; }
        [ "$(wc -l <"$tmp/c.txt")" -gt 0 ] || { echo "FAILED ($mode): $t is empty"; exit 1; }
    done
    echo "ok ($mode): $n tensors, names, shapes and the values of 5 tensors agree"
done
