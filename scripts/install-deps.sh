#!/usr/bin/env bash
# install-deps.sh: install the Debian packages wageubn needs, when they are missing.
#
# Run by `make train` and `make test` before configuring. As root it installs what
# is missing with apt-get; otherwise it names the missing packages and the command
# that installs them, and fails. Nothing is downloaded when everything is present.
set -euo pipefail

# What the build and the tests need. The CUDA toolkit is not a Debian package here:
# the CUDA backend is built when nvcc is found (see CMakeLists.txt).
# dataset-fashion-mnist is the default data set: `make train` trains on it and the
# whole-network tests overfit a few of its images. libcjson-dev: checkpoints and
# sweeps (JSON); gnuplot-nox: `wageubn plot`; python3-numpy: the test that loads a
# checkpoint with the numpy snippet of docs/checkpoints.md; libdnnl-dev (oneDNN): the
# fp32 mode's GEMMs. (The fuzzing script, scripts/fuzz.sh, also needs clang, and the
# PyTorch comparison of bench/ python3-torch; each says so when it is missing.)
# openmpi-bin, libopenmpi-dev: training with several processes (mpirun), and its test;
# libturbojpeg0-dev: the ImageNet pipeline's JPEG decoding.
PACKAGES=(cmake make gcc g++ libc6-dev libcmocka-dev zlib1g-dev libinih-dev libcjson-dev libdnnl-dev gnuplot-nox
          python3-numpy dataset-fashion-mnist openmpi-bin libopenmpi-dev libturbojpeg0-dev)

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: not a Debian system (no dpkg-query); make sure these are installed: ${PACKAGES[*]}" >&2
    exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps: install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
