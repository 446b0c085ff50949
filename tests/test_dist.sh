#!/usr/bin/env bash
# test_dist.sh: training under mpirun on the CPU backend (docs/distributed.md).
#
# - exact: 2 ranks at global batch 32 end 20 steps of resnet20 with every checkpoint
#   tensor (weights, momenta, BN statistics) byte-identical to one process at batch 32,
#   and resume each other's checkpoint: 2 ranks resuming that run for a second epoch end
#   identical to one process training both epochs at once;
# - compressed (int8 gradients, BN per rank): the loss falls, and two runs are identical;
# - only rank 0 writes: one summary line, one metrics file;
# - a rank that exits early ends the job at once with its status (no hang);
# - a batch that does not split over the ranks is refused, said once.
# Skipped (77) without mpirun, without MPI in this build or without dataset-fashion-mnist.
# Usage: test_dist.sh BUILD_DIR SOURCE_DIR
set -u
bin="$1/wageubn"
src="$2"
command -v mpirun >/dev/null 2>&1 || { echo "test_dist: no mpirun (Debian: openmpi-bin): skipped"; exit 77; }
"$bin" version | grep -q "multi-process: MPI" || { echo "test_dist: this build has no MPI: skipped"; exit 77; }
[ -d /usr/share/datasets/fashion-mnist ] || { echo "test_dist: no dataset-fashion-mnist: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
py=python3
command -v "$py" >/dev/null 2>&1 || py=/usr/bin/python3
cmp="$py $src/tests/compare_checkpoints.py"
mpi=(mpirun --oversubscribe -np 2)
[ "$(id -u)" -ne 0 ] || mpi+=(--allow-run-as-root)
fail=0
check() { # check NAME COMMAND...: run, report
    local name=$1
    shift
    if "$@"; then echo "ok: $name"; else echo "FAILED: $name"; fail=1; fi
}
common=(configs/fashion_resnet20_int8.ini --set data.limit_train=640 --set data.limit_test=128 --set train.batch=32
        --set train.lr_boundaries= --set train.lr_multipliers=1 --set train.g_scale=128 --set train.threads=1
        --set train.log_every=5 --set train.bn_recalibrate=2)
cd "$src"
export OMP_WAIT_POLICY=PASSIVE

# exact: 2 ranks = 1 process, bit for bit
"$bin" train "${common[@]}" --set train.epochs=1 --out "$tmp/one" >/dev/null 2>"$tmp/one.err" || { cat "$tmp/one.err"; exit 1; }
"${mpi[@]}" "$bin" train "${common[@]}" --set train.epochs=1 --out "$tmp/two" >/dev/null 2>"$tmp/two.err" ||
    { cat "$tmp/two.err"; exit 1; }
check "exact: 2 ranks end 20 steps identical to one process" $cmp "$tmp/one/latest.safetensors" "$tmp/two/latest.safetensors"
check "exact: the same test accuracy" [ "$(grep -o 'test accuracy [0-9.]*%' "$tmp/one.err")" = \
    "$(grep -o 'test accuracy [0-9.]*%' "$tmp/two.err")" ]
check "only rank 0 reports" [ "$(grep -c 'test accuracy' "$tmp/two.err")" -eq 1 ]
check "only rank 0 writes metrics" [ "$(grep -c '"split": "test"' "$tmp/two/metrics.jsonl")" -eq 1 ]
check "the header says 2 ranks and the traffic" grep -q "2 ranks .*exact.* MB of gradients allreduced per step" "$tmp/two.err"

# resume: 2 ranks continue the 2-rank run; one process trains both epochs at once
"${mpi[@]}" "$bin" train "${common[@]}" --set train.epochs=2 --resume "$tmp/two" >/dev/null 2>"$tmp/res.err" ||
    { cat "$tmp/res.err"; exit 1; }
"$bin" train "${common[@]}" --set train.epochs=2 --out "$tmp/one2" >/dev/null 2>"$tmp/one2.err" || { cat "$tmp/one2.err"; exit 1; }
check "exact: 2 ranks resuming end identical to one process" $cmp "$tmp/one2/latest.safetensors" \
    "$tmp/two/latest.safetensors"

# compressed: trains, deterministically
for k in a b; do
    "${mpi[@]}" "$bin" train "${common[@]}" --set train.epochs=1 --set dist.allreduce=compressed --set dist.bn=local \
        --out "$tmp/c$k" >/dev/null 2>"$tmp/c$k.err" || { cat "$tmp/c$k.err"; exit 1; }
done
check "compressed: two runs identical" $cmp "$tmp/ca/latest.safetensors" "$tmp/cb/latest.safetensors"
first=$(grep '"split": "train"' "$tmp/ca/metrics.jsonl" | head -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"split": "train"' "$tmp/ca/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check "compressed: the loss falls ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN {exit !(b < a - 0.3)}'

# a rank that exits early ends the job, fast and with its status
start=$(date +%s)
timeout 120 "${mpi[@]}" bash -c 'if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then sleep 1; exit 3; fi; exec "$@"' rank \
    "$bin" train "${common[@]}" --set train.epochs=100 --out "$tmp/early" >/dev/null 2>"$tmp/early.err"
rc=$?
took=$(($(date +%s) - start))
failed_fast() { [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$took" -lt 60 ]; }
check "a rank exiting early fails the job (status $rc, $took s)" failed_fast

# a batch the ranks cannot share
mpirun --oversubscribe -np 3 $( [ "$(id -u)" -ne 0 ] || echo --allow-run-as-root ) "$bin" train "${common[@]}" \
    --out "$tmp/odd" >/dev/null 2>"$tmp/odd.err"
check "batch 32 on 3 ranks: refused" [ $? -ne 0 ]
check "batch 32 on 3 ranks: said once, naming the key" [ "$(grep -c '\[train\] batch = 32 does not split evenly over 3 ranks' "$tmp/odd.err")" -eq 1 ]

exit $fail
