# cli_checks.sh: what the shell tests share (sourced after `set -u`, with $1 the build
# directory and $2 the source directory): bin, src, a temporary directory removed on
# exit, and check/finish to count the checks.
bin="$1/wageubn"
src="$2"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
pass=0
check() { # check NAME CONDITION...
    local name=$1
    shift
    if "$@"; then pass=$((pass + 1)); else echo "FAILED: $name"; fail=$((fail + 1)); fi
}
finish() { # the summary line and the exit status
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
