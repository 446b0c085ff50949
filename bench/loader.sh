#!/usr/bin/env bash
# loader.sh: the ImageNet pipeline against torchvision on the same JPEGs, side by side:
# bench_loader (1 and 2 worker threads) and bench/loader_torch.py (decode_jpeg and
# RandomResizedCrop, 1 and 2 torch threads), alternating RUNS times, then each one's
# median and the ratio.
#
#   bench/loader.sh [-b BUILD] [-d DIR] [-n IMAGES] [-r RUNS]
set -euo pipefail
build=build
dir=/tmp/wg_loader_bench
images=256
runs=3
while getopts "b:d:n:r:" opt; do
  case $opt in
    b) build=$OPTARG ;;
    d) dir=$OPTARG ;;
    n) images=$OPTARG ;;
    r) runs=$OPTARG ;;
    *) echo "usage: $0 [-b BUILD] [-d DIR] [-n IMAGES] [-r RUNS]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
"$py" -c "import torchvision" 2>/dev/null || { echo "loader.sh: no torchvision for $py (apt-get install python3-torchvision)" >&2; exit 2; }
out=$(mktemp)
for i in $(seq "$runs"); do
  "$build/bench_loader" "$dir" "$images" 3 | grep '^result' >>"$out"
  "$py" "$here/loader_torch.py" "$dir" 3 | grep '^result' >>"$out"
done
printf '%-10s %16s %16s %8s\n' workers "wageubn img/s" "torchvision img/s" ratio
for w in 1 2; do
  ours=$(awk -v k="loader_${w}w_img_per_s" '$2 == k {print $3}' "$out" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  peer=$(awk -v k="torch_loader_${w}w_img_per_s" '$2 == k {print $3}' "$out" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  printf '%-10s %16s %16s %7.2fx\n' "$w" "$ours" "$peer" "$(awk -v a="$ours" -v b="$peer" 'BEGIN {print a / b}')"
done
rm -f "$out"
