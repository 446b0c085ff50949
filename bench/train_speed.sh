#!/usr/bin/env bash
# train_speed.sh: training throughput (images/s) of short runs, median of several.
#
# Each run trains one epoch on the first 12800 training images (100 steps of batch
# 128) of a config, with a constant schedule, and reads train_img_per_s from its
# summary.json (training steps only: data loading included, evaluation excluded).
# Runs alternate between the configs given, so a drift of the machine's speed hits
# them alike. Prints each config's runs and their median.
#
# -t: also time the PyTorch float32 peer, bench/torch_resnet20.py (resnet20 on the
# same 12800 Fashion-MNIST images, batch 128, 2 threads; Debian's python3-torch under
# /usr/bin/python3), in the same alternation, and print each config's median against
# it. Meaningful for the resnet20 Fashion-MNIST configs.
#
#   bench/train_speed.sh [-n RUNS] [-b BINARY] [-t] CONFIG [CONFIG...]
#   bench/train_speed.sh -t configs/fashion_resnet20_int8.ini configs/fashion_resnet20_fp32.ini
set -euo pipefail
runs=5
bin=build/wageubn
torch=0
usage="usage: $0 [-n RUNS] [-b BINARY] [-t] CONFIG [CONFIG...]"
while getopts "n:b:t" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    b) bin=$OPTARG ;;
    t) torch=1 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
py=/usr/bin/python3
if [ "$torch" = 1 ] && ! "$py" -c "import torch, numpy" 2>/dev/null; then
  echo "train_speed.sh: -t needs PyTorch and numpy for $py (Debian: apt-get install python3-torch python3-numpy)" >&2
  exit 1
fi
[ -x "$bin" ] || { echo "train_speed.sh: $bin not found: run make build first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

declare -A rates
for ((r = 0; r < runs; r++)); do
  for cfg in "$@"; do
    out=$tmp/run
    rm -rf "$out"
    "$bin" train "$cfg" --out "$out" --set train.epochs=1 --set data.limit_train=12800 --set data.limit_test=256 \
      --set train.lr_boundaries= --set train.lr_multipliers=1 --set train.g_scale=128 --set train.bn_recalibrate=1 \
      >"$tmp/log" 2>&1 || { cat "$tmp/log" >&2; exit 1; }
    rate=$(sed 's/.*"train_img_per_s": \([0-9.]*\).*/\1/' "$out/summary.json")
    rates[$cfg]="${rates[$cfg]:-} $rate"
  done
  if [ "$torch" = 1 ]; then
    OMP_NUM_THREADS=2 "$py" "$(dirname "$0")/torch_resnet20.py" --images 12800 --threads 2 >"$tmp/log" 2>&1 ||
      { cat "$tmp/log" >&2; exit 1; }
    rates[torch]="${rates[torch]:-} $(sed -n 's/^torch float32 resnet20: \([0-9.]*\) img\/s.*/\1/p' "$tmp/log")"
  fi
done
median_of() { # median_of KEY
  # shellcheck disable=SC2086 # the list of rates
  printf '%s\n' ${rates[$1]} | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
[ "$torch" = 1 ] && echo "PyTorch float32 (bench/torch_resnet20.py): median $(median_of torch) img/s (runs:${rates[torch]})"
for cfg in "$@"; do
  median=$(median_of "$cfg")
  ratio=""
  [ "$torch" = 1 ] && ratio=$(awk -v a="$median" -v b="$(median_of torch)" 'BEGIN {printf "; %.2fx PyTorch", a / b}')
  echo "$cfg: median $median img/s$ratio (runs:${rates[$cfg]})"
done
