#!/usr/bin/env bash
# GPU check of the CUDA backend, for a bare GPU machine: CMake, nvcc (CUDA 13) and python3 with
# PyTorch; no Node.js, no FAISS, no BLAS needed. Builds the core and the CUDA backend, runs the
# CUDA tests against the CPU core, then benchmarks our kernels against the same steps written
# with PyTorch the way the original does them, on the same generated data, and prints a table.
# Finishes in a few minutes (each stage has its own time limit). Logs go to $OUT when set.
#
#   bash scripts/gpu-check.sh            # N=1000000 D=512 K=1000 NITER=20 BIG=50000
#   N=200000 bash scripts/gpu-check.sh   # smaller data
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOG=${OUT:-$ROOT/build-gpu/logs}
mkdir -p "$LOG"
N=${N:-1000000}
D=${D:-512}
K=${K:-1000}
NITER=${NITER:-20}
BIG=${BIG:-50000}
ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-16}
DATA=${DATA_DIR:-/tmp/semdedup-gpu}
mkdir -p "$DATA"

stage() { echo; echo "=== $* ($(date +%T))"; }

stage "device"
nvidia-smi 2>&1 | tee "$LOG/nvidia-smi.txt" || echo "nvidia-smi failed"
nvcc --version | tail -n 2
cmake --version | head -n 1

stage "configure (no FAISS, CUDA on, sm_$ARCH)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSEMDEDUP_FAISS=OFF -DSEMDEDUP_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DSEMDEDUP_CUDA_PTXAS_VERBOSE=ON >"$LOG/configure.txt" 2>&1 \
  || { tail -n 40 "$LOG/configure.txt"; exit 1; }
grep -E "semdedup:|CUDA" "$LOG/configure.txt" || true

stage "build"
timeout 300 cmake --build build-gpu -j "$JOBS" --target test_cuda bench_cuda >"$LOG/build.txt" 2>&1 \
  || { tail -n 60 "$LOG/build.txt"; exit 1; }
# registers / spills of every kernel (ptxas -v)
grep -E "Compiling entry|registers|spill" "$LOG/build.txt" | sed -E 's/_ZN8semdedup4cuda[0-9A-Za-z_]*_cu_[0-9a-f]{8}//' \
  | paste - - - | sed -E 's/ +/ /g' | tee "$LOG/ptxas.txt" | head -n 20 || true

stage "tests (test_cuda against the CPU core)"
set +e
timeout 240 ./build-gpu/test_cuda --require-gpu 2>&1 | tee "$LOG/test_cuda.txt"
TEST_RC=${PIPESTATUS[0]}
set -e
echo "test_cuda exit code: $TEST_RC"

stage "benchmark: ours (N=$N D=$D k=$K niter=$NITER, big cluster $BIG)"
timeout 180 ./build-gpu/bench_cuda --gen --file "$DATA/x.f32" --n "$N" --d "$D" --k "$K" --niter "$NITER" \
  --big "$BIG" --out "$DATA" 2>&1 | tee "$LOG/bench_cuda.txt"
cp "$DATA/bench_cuda.json" "$LOG/" 2>/dev/null || true

stage "benchmark: PyTorch reference (the original's way)"
set +e
timeout 240 python3 bench/gpu/torch_reference.py --file "$DATA/x.f32" --n "$N" --d "$D" --k "$K" --niter "$NITER" \
  --big "$BIG" --clusters "$DATA/clusters.bin" --ours "$DATA/bench_cuda.json" --json "$LOG/torch.json" 2>&1 \
  | tee "$LOG/torch_reference.txt"
TORCH_RC=${PIPESTATUS[0]}
set -e
rm -f "$DATA/x.f32"

stage "summary"
grep -E "^(ok|FAIL|SKIP)|passed, .* failed" "$LOG/test_cuda.txt" | tail -n 30 || true
echo "torch reference exit code: $TORCH_RC"
if [ "$TEST_RC" -ne 0 ]; then
  echo "gpu-check: test_cuda FAILED"
  exit 1
fi
echo "gpu-check: OK"
