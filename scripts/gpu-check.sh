#!/usr/bin/env bash
# GPU check of the CUDA backend, for a bare GPU machine: CMake, nvcc (CUDA 13) and python3 with
# PyTorch; no Node.js, no FAISS, no BLAS needed there. The CLI runs from the bundle that
# scripts/gpu-bundle.sh makes on a build machine (node, the addon, dist/, the libraries).
#   1. builds the CUDA tests and kernel benchmark (nvcc, no FAISS), prints the kernels' spills;
#   2. test_cuda --require-gpu (the CUDA backend against the CPU core);
#   3. bench_cuda against the PyTorch reference (the original's way) and NeMo Curator's loop;
#   4. the whole CLI (`semdedup run`) at N1 and N2 rows on the GPU and on the CPU of the same
#      host, the CPU run given the GPU run's centroids: wall time, steps, peak RSS, and whether
#      cluster_order, keep_order, the kept rows and the kept ids are byte-identical;
# then one table. Each stage has its own time limit, cut to what is left of LIMIT (470 s): the
# whole check stays under 8 minutes, and a stage that runs out says so in the table.
#
#   bash scripts/gpu-check.sh                       # BUNDLE=build-bundle/gpu-bundle.tar.xz
#   N1=1000000 N2=10000000 D=512 K=1000 bash scripts/gpu-check.sh
# Logs and the table go to $OUT (else build-gpu/logs).
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOG=${OUT:-$ROOT/build-gpu/logs}
mkdir -p "$LOG"
N=${N:-1000000}      # kernel benchmark rows
N1=${N1:-1000000}    # CLI runs
N2=${N2:-10000000}
D=${D:-512}
K=${K:-1000}
NITER=${NITER:-20}
BIG=${BIG:-50000}
ARCH=${CUDA_ARCH:-90}
JOBS=${JOBS:-$(nproc)}
DATA=${DATA_DIR:-/tmp/semdedup-gpu}
BUNDLE=${BUNDLE:-$ROOT/build-bundle/gpu-bundle.tar.xz}
RES="$LOG/results.txt"
mkdir -p "$DATA"
: >"$RES"
T0=$(date +%s)

LIMIT=${LIMIT:-470}  # seconds for the whole check: every stage's limit is cut to what is left
stage() { echo; echo "=== $* ($(date +%T), $(($(date +%s) - T0)) s)"; }
put() { echo "$1|$2" >>"$RES"; }
lim() {  # lim S: S, or the seconds left of LIMIT when fewer (at least 1)
  local left=$((LIMIT - ($(date +%s) - T0)))
  [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"
}

stage "device"
timeout 20 nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv 2>&1 | tee "$LOG/nvidia-smi.txt"
put device "$(timeout 20 nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -n 1); $(nproc) CPU cores"
nvcc --version | tail -n 2

stage "build (no FAISS, CUDA sm_$ARCH)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSEMDEDUP_FAISS=OFF -DSEMDEDUP_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$ARCH" -DSEMDEDUP_CUDA_PTXAS_VERBOSE=ON >"$LOG/configure.txt" 2>&1 \
  || { tail -n 40 "$LOG/configure.txt"; exit 1; }
timeout $(lim 240) cmake --build build-gpu -j "$JOBS" --target test_cuda bench_cuda >"$LOG/build.txt" 2>&1 \
  || { tail -n 60 "$LOG/build.txt"; exit 1; }
SPILLS=$(grep -E "spill stores" "$LOG/build.txt" | grep -vc " 0 bytes spill stores, 0 bytes spill loads")
put "kernels with spills (ptxas -v)" "$SPILLS"

stage "tests: test_cuda --require-gpu"
timeout $(lim 150) ./build-gpu/test_cuda --require-gpu 2>&1 | tee "$LOG/test_cuda.txt"
TEST_RC=${PIPESTATUS[0]}
put "test_cuda --require-gpu" "$(tail -n 1 "$LOG/test_cuda.txt") (exit $TEST_RC)"

stage "kernel benchmark: ours (N=$N D=$D k=$K niter=$NITER, big cluster $BIG)"
timeout $(lim 120) ./build-gpu/bench_cuda --gen --file "$DATA/x.f32" --n "$N" --d "$D" --k "$K" --niter "$NITER" \
  --big "$BIG" --out "$DATA" 2>&1 | tee "$LOG/bench_cuda.txt"
grep -E "^RESULT" "$LOG/bench_cuda.txt" | sed -E 's/^RESULT step=([^ ]+) ms=([^ ]+) .*gflops=([^ ]+).*/ours \1|\2 ms, \3 GFLOP\/s/' >>"$RES"

stage "kernel benchmark: PyTorch, the original's way and NeMo Curator's loop"
timeout $(lim 200) python3 bench/gpu/torch_reference.py --file "$DATA/x.f32" --n "$N" --d "$D" --k "$K" --niter "$NITER" \
  --big "$BIG" --clusters "$DATA/clusters.bin" --ours "$DATA/bench_cuda.json" --json "$LOG/torch.json" --nemo 2>&1 \
  | tee "$LOG/torch_reference.txt"
grep -E "^RESULT" "$LOG/torch_reference.txt" | sed -E 's/^RESULT step=([^ ]+) ms=([^ ]+) .*gflops=([^ ]+).*/torch \1|\2 ms, \3 GFLOP\/s/' >>"$RES"
grep -E "^NEMO" "$LOG/torch_reference.txt" | sed -E 's/^NEMO step=([^ ]+) changed_decisions=([0-9]+).*/torch \1 changed decisions|\2/' >>"$RES"

# ---- the CLI from the bundle, GPU against the CPU of this host
CLI_DIR="$DATA/bundle"
if [ -f "$BUNDLE" ]; then
  stage "CLI: unpack $BUNDLE"
  rm -rf "$CLI_DIR" && mkdir -p "$CLI_DIR" && tar -C "$CLI_DIR" -xJf "$BUNDLE"
  timeout 20 "$CLI_DIR/semdedup" info 2>&1 | tee "$LOG/info.txt"
else
  echo "gpu-check: no bundle at $BUNDLE (make it with scripts/gpu-bundle.sh on a build machine): CLI runs skipped"
  put "CLI" "skipped: no bundle"
fi

# run_cli LABEL FILE ROWS DEVICE OUTDIR [CENTROIDS]: wall seconds, steps and peak RSS of `semdedup run`
run_cli() {
  local label=$1 file=$2 rows=$3 device=$4 out=$5 cen=${6:-}
  rm -rf "$out" && mkdir -p "$out"
  cat >"$out.yaml" <<EOF
embeddings: $file
embeddings_format: memmap
dataset_size: $rows
dim: $D
output_dir: $out
k: $K
niter: $NITER
spherical: true
eps_list: [0.01, 0.05, 0.1]
EOF
  [ -n "$cen" ] && echo "centroids: $cen" >>"$out.yaml"
  python3 - "$CLI_DIR/semdedup" "$out.yaml" "$device" "$LOG/cli-$label.txt" <<'EOF'
import resource, subprocess, sys, time
cli, cfg, device, log = sys.argv[1:5]
t = time.time()
with open(log, "w") as f:
    rc = subprocess.call([cli, "run", "--config", cfg, "--device", device, "-q"], stdout=f, stderr=subprocess.STDOUT)
wall = time.time() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
steps = open(log).read().strip().splitlines()
done = [l for l in steps if l.startswith("done in")]
print(f"{wall:.2f} s wall; {done[0][8:] if done else 'no summary'}; peak RSS {rss:.2f} GB; exit {rc}")
EOF
}

same_outputs() {  # a b: which of the step 3-5 outputs are byte-identical
  local a=$1 b=$2 diffs=""
  for f in semdedup/cluster_order.npy semdedup/cluster_distance.npy semdedup/keep_order.npy \
    semdedup/kept_rows_eps0.01.npy semdedup/kept_rows_eps0.05.npy semdedup/kept_rows_eps0.1.npy \
    kept_eps0.01.txt kept_eps0.05.txt kept_eps0.1.txt nearest_cent.npy dist_to_cent.npy; do
    cmp -s "$a/$f" "$b/$f" || diffs="$diffs $(basename "$f")"
  done
  [ -z "$diffs" ] && echo "all byte-identical" || echo "differ:$diffs"
}

if [ -d "$CLI_DIR" ]; then
  for NR in "$N1" "$N2"; do
    if [ "$NR" = "$N" ] && [ -f "$DATA/x.f32" ]; then
      F="$DATA/x.f32"
    else
      F="$DATA/x-$NR.f32"
      stage "CLI: data $NR x $D"
      timeout $(lim 120) ./build-gpu/bench_cuda --gen-only --file "$F" --n "$NR" --d "$D" --k "$K" 2>&1 | tail -n 1
    fi
    stage "CLI: semdedup run --device cuda, $NR x $D"
    R=$(timeout $(lim 150) bash -c "$(declare -f run_cli); CLI_DIR='$CLI_DIR' D=$D K=$K NITER=$NITER LOG='$LOG' run_cli gpu-$NR '$F' $NR cuda '$DATA/out-gpu-$NR'")
    R=${R:-"failed or out of time (see $LOG/cli-gpu-$NR.txt)"}
    echo "$R"; put "CLI run --device cuda, $NR rows" "$R"
    stage "CLI: semdedup run --device cpu, $NR x $D, the GPU run's centroids"
    R=$(timeout $(lim 200) bash -c "$(declare -f run_cli); CLI_DIR='$CLI_DIR' D=$D K=$K NITER=$NITER LOG='$LOG' run_cli cpu-$NR '$F' $NR cpu '$DATA/out-cpu-$NR' '$DATA/out-gpu-$NR/kmeans_centroids.npy'")
    R=${R:-"failed or out of time (see $LOG/cli-cpu-$NR.txt)"}
    echo "$R"; put "CLI run --device cpu, $NR rows (same centroids)" "$R"
    put "CLI outputs cuda vs cpu, $NR rows" "$(same_outputs "$DATA/out-gpu-$NR" "$DATA/out-cpu-$NR")"
    [ "$F" != "$DATA/x.f32" ] && rm -f "$F"
  done
fi
rm -f "$DATA/x.f32"

stage "summary"
{
  echo "| $(date -u +%F) | $(($(date +%s) - T0)) s |"
  echo "|---|---|"
  while IFS='|' read -r k v; do echo "| $k | $v |"; done <"$RES"
} | tee "$LOG/table.md"
if [ "$TEST_RC" -ne 0 ]; then
  echo "gpu-check: test_cuda FAILED"
  exit 1
fi
echo "gpu-check: OK"
