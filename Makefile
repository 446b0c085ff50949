# wageubn: the two commands of the README, as a thin layer over CMake.
#
#   make train   install what is missing, build, train the default network
#                (resnet20 on Fashion-MNIST in full 8-bit integers)
#   make test    install what is missing, build (CPU + CUDA compile), run all tests
#   make bench   build and run the benchmarks (docs/performance.md)
#
# Variables: BUILD (build directory, default build), JOBS (parallel jobs),
# CMAKE_FLAGS (extra configure flags, e.g. -DWG_CUDA=OFF or -DWG_SANITIZE=ON),
# TRAIN_FLAGS (extra arguments of `wageubn train`, e.g. --set train.epochs=1).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test train bench clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

# --overwrite: each `make train` starts the default run over (an interrupted one is
# continued with `build/wageubn train configs/fashion_resnet20_int8.ini --resume
# runs/fashion_resnet20_int8`)
train: build
	$(BUILD)/wageubn train configs/fashion_resnet20_int8.ini --overwrite $(TRAIN_FLAGS)

# bench_onednn is built when oneDNN is installed, and train_speed.sh -t times PyTorch
# when python3-torch is (docs/performance.md: apt-get install libdnnl-dev python3-torch)
bench: build
	$(BUILD)/bench_quant
	$(BUILD)/bench_gemm
	if [ -x $(BUILD)/bench_onednn ]; then $(BUILD)/bench_onednn; else echo "bench_onednn: not built (no libdnnl-dev)"; fi
	if /usr/bin/python3 -c "import torch" 2>/dev/null; then torch=-t; fi; \
	bench/train_speed.sh -n 3 $$torch -b $(BUILD)/wageubn configs/fashion_resnet20_int8.ini configs/fashion_resnet20_fp32.ini

clean:
	rm -rf $(BUILD)
