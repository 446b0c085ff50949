#!/usr/bin/env bash
# train_speed.sh: training throughput (images/s) of short runs, median of several.
#
# Each run trains one epoch on the first 12800 training images (100 steps of batch
# 128) of a config, with a constant schedule, and reads train_img_per_s from its
# summary.json (training steps only: data loading included, evaluation excluded).
# Runs alternate between the configs given, so a drift of the machine's speed hits
# them alike. Prints each config's runs and their median.
#
#   bench/train_speed.sh [-n RUNS] [-b BINARY] CONFIG [CONFIG...]
#   bench/train_speed.sh configs/fashion_resnet20_int8.ini configs/fashion_resnet20_fp32.ini
set -euo pipefail
runs=5
bin=build/wageubn
while getopts "n:b:" opt; do
  case $opt in
    n) runs=$OPTARG ;;
    b) bin=$OPTARG ;;
    *) echo "usage: $0 [-n RUNS] [-b BINARY] CONFIG [CONFIG...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-n RUNS] [-b BINARY] CONFIG [CONFIG...]" >&2; exit 2; }
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
done
for cfg in "$@"; do
  # shellcheck disable=SC2086 # the list of rates
  median=$(printf '%s\n' ${rates[$cfg]} | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  echo "$cfg: median $median img/s (runs:${rates[$cfg]})"
done
