#!/usr/bin/env bash
# tune-fashion.sh: the validation-split tuning record of docs/tuning.md.
#
# Trains resnet20 on Fashion-MNIST in int8 (preset full, the default config) for each
# point of a small grid over the learning rate and the g_scale schedule, holding out
# the last 5000 training images as a validation split ([data] val_split); the test
# set is not looked at. Prints one Markdown row per point: the validation accuracy
# after each epoch. Runs already finished (summary.json present) are not redone.
#
#   scripts/tune-fashion.sh [RUN_ROOT]        (default runs/tune-fashion)
#   WG_BIN=path/to/wageubn scripts/tune-fashion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${WG_BIN:-build/wageubn}
root=${1:-runs/tune-fashion}
config=configs/fashion_resnet20_int8.ini
mkdir -p "$root"
[ -x "$bin" ] || { echo "tune-fashion.sh: $bin not found: run make build first" >&2; exit 1; }

# name | --set arguments
points=(
  "lr0.2|--set train.lr=0.2"
  "lr0.4|--set train.lr=0.4"
  "lr0.8|--set train.lr=0.8"
  "lr1.6|--set train.lr=1.6"
  "lr0.8-gdecay|--set train.lr=0.8 --set train.g_scale=128,32,8"
)

echo "| point | settings | val acc after epochs 1..5 | train img/s |"
echo "|---|---|---|---|"
for p in "${points[@]}"; do
  name=${p%%|*}
  args=${p#*|}
  dir=$root/$name
  if [ ! -s "$dir/summary.json" ]; then
    # shellcheck disable=SC2086 # args is a list of words
    "$bin" train "$config" --set data.val_split=5000 $args --out "$dir" >"$root/$name.log" 2>&1 \
      || { echo "tune-fashion.sh: $name failed, see $root/$name.log" >&2; exit 1; }
  fi
  accs=$(grep '"split": "val"' "$dir/metrics.jsonl" | sed 's/.*"acc": \([0-9.]*\).*/\1/' |
         awk '{printf "%s%.2f", (NR > 1 ? " / " : ""), 100 * $1}')
  ips=$(sed 's/.*"train_img_per_s": \([0-9.]*\).*/\1/' "$dir/summary.json")
  echo "| $name | \`$args\` | $accs | $ips |"
done
