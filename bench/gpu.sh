#!/usr/bin/env bash
# gpu.sh: the CUDA backend beside PyTorch on the same GPU, in one run.
#
# Runs bench_gpu (int8 GEMM TOPS; the per-layer times of ResNet-18 and ResNet-50 on the
# mma.sync and wgmma implicit-GEMM kernels, on im2col + cuBLASLt and of cuBLASLt on the
# equivalent GEMMs; whole int8 training steps in the auto mode and on each kernel alone,
# the auto mode's choices, and the GPU memory), then its layers again at
# twice the batch, and bench/gpu_torch.py (the same networks in PyTorch, bf16 autocast,
# channels_last), then prints the training images/s side by side with their ratio.
# Writes the logs and results.txt (every "result" line) into OUT.
#
#   bench/gpu.sh [-b BUILD] [-o OUT] [-B BATCH] [-s STEPS] [-p PYTHON]
set -euo pipefail
build=build
out=gpu-bench
batch=128
steps=10
py=python3
usage="usage: $0 [-b BUILD] [-o OUT] [-B BATCH] [-s STEPS] [-p PYTHON]"
while getopts "b:o:B:s:p:" opt; do
  case $opt in
    b) build=$OPTARG ;;
    o) out=$OPTARG ;;
    B) batch=$OPTARG ;;
    s) steps=$OPTARG ;;
    p) py=$OPTARG ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
[ -x "$build/bench_gpu" ] || { echo "gpu.sh: $build/bench_gpu is not built (configure with -DWG_CUDA=ON)" >&2; exit 2; }

status=0
"$build/bench_gpu" --batch "$batch" --steps "$steps" 2>&1 | tee "$out/bench_gpu.log" || status=$?
"$build/bench_gpu" --batch $((2 * batch)) --layers-only 2>&1 | tee "$out/bench_gpu_layers2.log" || status=$?
"$py" "$here/gpu_torch.py" --batch "$batch" --steps "$steps" 2>&1 | tee "$out/gpu_torch.log" || status=$?
grep -h '^result ' "$out/bench_gpu.log" "$out/bench_gpu_layers2.log" "$out/gpu_torch.log" | cut -d' ' -f2- >"$out/results.txt" || true

echo
printf '%-10s %14s %14s %10s %10s %10s %10s\n' model "wageubn img/s" "torch img/s" ratio "igemm" "wgmma" \
  "cublaslt" | tee "$out/summary.txt"
get() { awk -v k="$1" '$1 == k {print $2}' "$out/results.txt"; }
for m in resnet18 resnet50; do
  ours=$(get "${m}_train_img_per_s_auto")
  peer=$(get "torch_${m}_train_img_per_s")
  ratio=$(awk -v a="${ours:-0}" -v b="${peer:-0}" 'BEGIN {if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-"}')
  ig=$(get "${m}_train_img_per_s_igemm")
  wg=$(get "${m}_train_img_per_s_wgmma")
  lt=$(get "${m}_train_img_per_s_cublaslt")
  printf '%-10s %14s %14s %10s %10s %10s %10s\n' "$m" "${ours:--}" "${peer:--}" "$ratio" "${ig:--}" "${wg:--}" \
    "${lt:--}" | tee -a "$out/summary.txt"
done
for m in resnet18 resnet50; do
  for b in "$batch" $((2 * batch)); do
    for p in fwd bwd_data bwd_weight; do
      r=$(get "${m}_b${b}_conv_${p}_ratio_to_gemm")
      [ -n "$r" ] && printf '%s batch %s %s: ours / cuBLASLt on the equivalent GEMMs = %s\n' "$m" "$b" "$p" "$r" | tee -a "$out/summary.txt"
    done
  done
done
exit $status
