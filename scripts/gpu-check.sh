#!/usr/bin/env bash
# gpu-check.sh: build and run the GPU tests on a machine with a GPU and no internet.
#
# Builds with CMake for the local GPU, runs every test (the "gpu" label compares the
# CUDA backend with the CPU backend bit for bit), and writes the logs under $OUT
# (default ./gpu-results). Such a machine may have no apt: bring cmocka along first
# with `scripts/fetch-deps.sh` here (it unpacks Debian's .debs of cmocka, libinih and cJSON into .deps/),
# then carry .deps to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-results}
BUILD=${BUILD:-build-gpu}
ARCH=${CUDA_ARCH:-native}
mkdir -p "$OUT"

flags=(-DCMAKE_BUILD_TYPE=Release -DWG_CUDA=ON -DWG_CUDA_DEBUG_SYNC=ON "-DCMAKE_CUDA_ARCHITECTURES=$ARCH")
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
ctest --test-dir "$BUILD" --output-on-failure 2>&1 | tee "$OUT/ctest.log" || status=$?
grep -E "tests passed|tests failed|Skipped|\*\*\*" "$OUT/ctest.log" | tee -a "$OUT/summary.txt" || true
exit $status
