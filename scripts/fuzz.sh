#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]: bounded libFuzzer runs of the
# readers of user input (tests/fuzz/): the config reader, the IDX/CIFAR dataset
# readers, the safetensors reader and the checkpoint layer on top of it (load and
# `wageubn info` against a small network). TARGETs (default: all) are among config,
# idx, safetensors, checkpoint.
#
# Each harness is built with clang -fsanitize=fuzzer,address,undefined (and
# WG_FUZZ_MUTATOR: the custom mutators that need libFuzzer) from the
# host/*.c and models/*.c files it needs (not through CMake: the fuzzing runtime
# wants clang, the project builds with gcc), then runs SECONDS_PER_TARGET seconds (default 60) on a
# working copy of its seed corpus under build-fuzz/corpus/<target>/, which keeps
# what libFuzzer adds between runs; tests/fuzz/corpus/ only gets the inputs we
# choose to keep. Crashing inputs go to build-fuzz/artifacts/<target>/.
#
# Prints one summary line per target (seconds, executions, executions/s, coverage,
# corpus size, crashes). Exits 1 when a target crashed (naming the input that
# reproduces it: build-fuzz/fuzz_<target> FILE), 2 when clang or libFuzzer is
# missing or a harness does not build.
set -euo pipefail

all_targets=(config idx safetensors checkpoint)
usage="usage: $0 [SECONDS_PER_TARGET] [TARGET...]   (a positive integer, default 60; TARGETs among ${all_targets[*]})"
secs=${1:-60}
if ! [[ $secs =~ ^[0-9]+$ ]] || ((secs < 1)); then
    echo "$usage" >&2
    exit 2
fi
targets=("${all_targets[@]}")
if (($# > 1)); then
    targets=("${@:2}")
    for t in "${targets[@]}"; do
        if [[ " ${all_targets[*]} " != *" $t "* ]]; then
            echo "fuzz.sh: unknown target '$t'; $usage" >&2
            exit 2
        fi
    done
fi
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build-fuzz
cc=${FUZZ_CC:-clang}
max_len=8192 # bytes: every reader's interesting structure fits (seeds are < 4 KiB) ...
declare -A max_len_of=([checkpoint]=16384) # ... but a checkpoint's (seeds are < 9 KiB)

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz.sh: $cc not found; install it (Debian: apt-get install clang)" >&2
    exit 2
fi
mkdir -p "$out"
probe=$out/.probe
cat >"$probe.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOF
if ! "$cc" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >"$probe.log" 2>&1; then
    cat "$probe.log" >&2
    echo "fuzz.sh: $cc cannot build a libFuzzer program (Debian: apt-get install clang," \
         "whose libclang-rt-14-dev holds libFuzzer)" >&2
    exit 2
fi

# What each harness needs: its sources besides the harness (the readers and what
# they call), relative to the source root, and compiler flags beyond cflags. The
# checkpoint harness builds a network: the core library's sources but the dataset
# readers and the trainer (the list of WG_CORE_SOURCES in CMakeLists.txt, less
# data*.c, eval.c, run_dir.c and train*.c), with OpenMP as in the normal build.
declare -A extra=(
    [config]="tests/fuzz/fuzz_tmp.c host/config.c host/ini_text.c host/quant.c host/tensor.c host/backend.c
        host/check.c"
    [idx]="tests/fuzz/fuzz_tmp.c host/data.c host/data_idx.c host/data_cifar.c host/check.c"
    [safetensors]="tests/fuzz/st_mutator.c host/safetensors.c host/check.c"
    [checkpoint]="tests/fuzz/st_mutator.c tests/fuzz/fuzz_tmp.c host/checkpoint.c host/safetensors.c host/config.c host/ini_text.c
        host/check.c host/tensor.c host/backend.c host/backend_cpu.c host/quant.c host/optim.c host/init.c
        host/act.c host/bn_f32.c host/bn_int.c host/bn_int_bwd.c host/conv.c host/conv_bwd.c host/conv_im2col.c
        host/convert.c host/gemm.c host/gemm_vnni.c host/pool.c host/residual.c host/softmax.c
        models/resnet.c models/resnet_pass.c"
)
declare -A xflags=([checkpoint]="-I$root/models -fopenmp")
# shellcheck disable=SC2054 # the commas belong to -fsanitize's list
cflags=(-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        -g -O1 -std=c11 -Wall -Wextra -I"$root/host")
libs=(-linih -lcjson -lz -lm)
# LeakSanitizer works in this container (checked); a UBSan report stops the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
crashes=()
for t in "${targets[@]}"; do
    bin=$out/fuzz_$t
    srcs=("$root/tests/fuzz/fuzz_$t.c")
    for s in ${extra[$t]}; do srcs+=("$root/$s"); done
    echo "fuzz.sh: building $bin"
    # shellcheck disable=SC2206 # xflags are words to split
    flags=("${cflags[@]}" ${xflags[$t]:-})
    if ! "$cc" "${flags[@]}" -DWG_FUZZ_MUTATOR=1 "${srcs[@]}" "${libs[@]}" -o "$bin"; then
        echo "fuzz.sh: the $t harness does not build (a reader that calls more of the core needs" \
             "its source added to extra[$t] in $0)" >&2
        exit 2
    fi
    work=$out/corpus/$t
    art=$out/artifacts/$t
    log=$out/fuzz_$t.log
    mkdir -p "$work" "$art"
    cp -n "$root/tests/fuzz/corpus/$t"/* "$work/" # a working copy; earlier finds stay
    dict=()
    [[ -f $root/tests/fuzz/$t.dict ]] && dict=(-dict="$root/tests/fuzz/$t.dict")
    echo "fuzz.sh: fuzzing $t for ${secs}s (log: $log)"
    rc=0
    (cd "$out" && "$bin" -max_total_time="$secs" -max_len="${max_len_of[$t]:-$max_len}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" "$work" >"$log" 2>&1) || rc=$?
    last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+)\/.*/\1 \2 \3/p' <<<"$last")
    read -r cov ft corp <<<"${cov:-? ? ?}"
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
    line=$(printf '%-12s %5ss  execs %-10s exec/s %-7s cov %-5s ft %-6s corpus %-6s' \
        "$t" "$secs" "${execs:-?}" "${rate:-?}" "$cov" "$ft" "$corp")
    if ((rc != 0)); then
        input=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        reason=$(grep -m1 -E 'ERROR: |runtime error: |fuzz_[a-z]+: |deadly signal|out-of-memory|timeout' "$log" || true)
        summary+=("$line crashes 1")
        crashes+=("$t: ${reason:-libFuzzer exited with $rc}
    input: ${input:-(none written; see $log)}
    reproduce: $bin ${input:-<input>}")
    else
        summary+=("$line crashes 0")
    fi
done

echo
echo "fuzz.sh summary (${secs}s per target; coverage = libFuzzer's cov/ft of the instrumented code):"
printf '  %s\n' "${summary[@]}"
if ((${#crashes[@]} > 0)); then
    echo
    echo "fuzz.sh: ${#crashes[@]} target(s) crashed:" >&2
    printf '  %s\n' "${crashes[@]}" >&2
    exit 1
fi
