#!/usr/bin/env bash
# gpu-check.sh: build and run the GPU tests on a machine with a GPU and no internet.
#
# Builds with CMake for the local GPU (90a on a compute capability 9.0 device, so that
# the wgmma kernels are built; else native) and runs every test with each launch waited
# for (WG_CUDA_DEBUG_SYNC=1: a faulting kernel is named): test_cuda first, alone (the
# CUDA backend against the CPU backend bit for bit, every convolution kernel and the
# auto mode, whose choices it prints; its trainings print their weight hashes), then
# the rest of ctest (test_nccl: NCCL against MPI on one GPU). Then the GPU benchmark
# beside PyTorch, launches not waited for (bench/gpu.sh; BENCH=0 skips it). Writes the
# logs under $OUT (default ./gpu-results), summary.txt first. Such a machine may have no
# apt: bring cmocka along first with `scripts/fetch-deps.sh` here (it unpacks Debian's
# .debs of cmocka, libinih and cJSON into .deps/), then carry .deps to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-results}
BUILD=${BUILD:-build-gpu}
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 || true)
if [ "$cap" = "9.0" ]; then ARCH=${CUDA_ARCH:-90a}; else ARCH=${CUDA_ARCH:-native}; fi
mkdir -p "$OUT"

flags=(-DCMAKE_BUILD_TYPE=Release -DWG_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH")
[ -d .deps/inih ] && flags+=("-DWG_INIH_ROOT=$PWD/.deps/inih")
if [ -d .deps/cjson ]; then
    flags+=("-DWG_CJSON_ROOT=$PWD/.deps/cjson")
    export LD_LIBRARY_PATH="$PWD/.deps/cjson/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if [ -d .deps/cmocka ]; then
    flags+=("-DWG_CMOCKA_ROOT=$PWD/.deps/cmocka")
    export LD_LIBRARY_PATH="$PWD/.deps/cmocka/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

{ nvidia-smi || echo "nvidia-smi failed"; } >"$OUT/nvidia-smi.txt" 2>&1
start=$(date +%s)
cmake -S . -B "$BUILD" "${flags[@]}" 2>&1 | tee "$OUT/configure.log"
cmake --build "$BUILD" -j "$(nproc)" 2>&1 | tee "$OUT/build.log" | tail -n 5
echo "build: $(( $(date +%s) - start )) s" | tee "$OUT/summary.txt"
"$BUILD/wageubn" devices 2>&1 | tee -a "$OUT/summary.txt"

status=0
export WG_REQUIRE_GPU=1 # here a skipped GPU test is a failure
export WG_CUDA_DEBUG_SYNC=1
# the GPU suite alone first, its output kept (the trainings print their weight hashes)
(cd "$BUILD/tests" && timeout 600 ./test_cuda) >"$OUT/test_cuda.log" 2>&1 || status=$?
grep -E "weights|PASSED|FAILED|\[  FAILED|error|DIFFERS|no wgmma" "$OUT/test_cuda.log" | tee -a "$OUT/summary.txt" || true
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" -E '^test_cuda$' 2>&1 | tee "$OUT/ctest.log" || status=$?
grep -E "tests passed|tests failed|Skipped|\*\*\*" "$OUT/ctest.log" | tee -a "$OUT/summary.txt" || true
echo "tests done: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"

if [ "${BENCH:-1}" = 1 ]; then
    export WG_CUDA_DEBUG_SYNC=0
    bench/gpu.sh -b "$BUILD" -o "$OUT/bench" -B "${BENCH_BATCH:-128}" -s "${BENCH_STEPS:-10}" >"$OUT/bench.log" 2>&1 ||
        echo "bench/gpu.sh failed (exit $?): see bench.log" | tee -a "$OUT/summary.txt"
    cat "$OUT/bench/summary.txt" >>"$OUT/summary.txt" 2>/dev/null || true
    grep -E "^result" "$OUT/bench.log" >>"$OUT/summary.txt" || true
    echo "bench done: $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
fi
exit $status
