#!/usr/bin/env bash
# check_ptxas.sh: what ptxas says of the implicit-GEMM kernels (cuda/igemm.cuh and
# cuda/igemm_wgmma.cuh), checked where no GPU is. Compiles cuda/conv_igemm.cu for sm_90a
# with ptxas's report and fails when a kernel spills registers (8 kernels: 3 wgmma, 5
# mma.sync), or when ptxas serializes the wgmmas (C7514: code
# reading an accumulator inside a wgmma's span; the operand fences are there to prevent
# it), or when no wgmma instruction is in the code at all.
#
#   check_ptxas.sh NVCC SOURCE_DIR
set -euo pipefail
nvcc=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$nvcc" -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -DWG_HAVE_SM90A=1 -I"$src/cuda" -I"$src/host" \
  -c "$src/cuda/conv_igemm.cu" -o "$tmp/conv_igemm.o" -Xptxas -v >"$tmp/ptxas.log" 2>&1 || {
  cat "$tmp/ptxas.log"; echo "check_ptxas: the sm_90a compile failed" >&2; exit 1; }
"$nvcc" -std=c++17 -gencode=arch=compute_90a,code=compute_90a -DWG_HAVE_SM90A=1 -I"$src/cuda" -I"$src/host" \
  -ptx "$src/cuda/conv_igemm.cu" -o "$tmp/conv_igemm.ptx"
status=0
if grep -q C7514 "$tmp/ptxas.log"; then
  grep C7514 "$tmp/ptxas.log" >&2
  echo "check_ptxas: ptxas serializes the wgmma instructions above" >&2
  status=1
fi
# per kernel: its name line, then the stack/spill line; no implicit-GEMM kernel may spill
kernels=$(awk '/Compiling entry function/ {name = $0} /spill stores/ && name ~ /igw?_kernel/ {print $5 " " name}' "$tmp/ptxas.log")
n=$(printf '%s\n' "$kernels" | grep -c igw_kernel || true)
m=$(printf '%s\n' "$kernels" | grep -c ig_kernel || true)
spills=$(printf '%s\n' "$kernels" | awk '$1 != 0' | grep -c _kernel || true)
wgmma=$(grep -c 'wgmma.mma_async' "$tmp/conv_igemm.ptx" || true)
echo "check_ptxas: $n wgmma and $m mma.sync kernels, $spills spilling, $wgmma wgmma.mma_async instructions in the PTX"
[ "$n" -ge 3 ] || { echo "check_ptxas: expected 3 wgmma kernels (forward, backward-data with 1 and 2 parts)" >&2; status=1; }
[ "$m" -ge 5 ] || { echo "check_ptxas: expected 5 mma.sync kernels (forward, backward-data and -weight with 1 and 2 parts)" >&2; status=1; }
[ "$spills" -eq 0 ] || { printf '%s\n' "$kernels" | awk '$1 != 0' >&2; echo "check_ptxas: a kernel spills (bytes, name)" >&2; status=1; }
[ "$wgmma" -gt 0 ] || { echo "check_ptxas: no wgmma instruction in the PTX" >&2; status=1; }
exit $status
