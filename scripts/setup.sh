#!/usr/bin/env bash
# One command from a fresh clone to results: installs the system packages the native build and
# the tests need (Debian/Ubuntu), installs the npm dependencies, builds the addon and the
# TypeScript, then runs the built-in example.
#   bash scripts/setup.sh            # everything, then the example
#   SEMDEDUP_SKIP_EXAMPLE=1 bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Build: cmake, a C++17 compiler, FAISS (CPU) and OpenBLAS. Tests and benchmarks: Debian's
# Python with numpy (reference .npy files), faiss, torch, pandas (the original pipeline as a peer),
# PyYAML (the config parser's reference), strace (the kill-point test injects SIGKILL at commits);
# chromium renders the HTML report in its test; onnx builds the small model of the embed tests.
pkgs=(cmake g++ make libfaiss-dev libopenblas-dev python3 python3-numpy python3-faiss python3-torch python3-pandas python3-yaml python3-onnx strace chromium)
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "setup: not a Debian/Ubuntu system; install cmake, a C++17 compiler, FAISS and OpenBLAS yourself" >&2
fi

# npm dependencies; the package's install script builds the native addon (scripts/install.cjs).
# onnxruntime-node (semdedup embed) bundles its CPU runtime; its postinstall would download the
# CUDA execution provider from outside the npm registry: skipped unless the caller asks for it.
export ONNXRUNTIME_NODE_INSTALL="${ONNXRUNTIME_NODE_INSTALL:-skip}"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build:ts

if [ -z "${SEMDEDUP_SKIP_EXAMPLE:-}" ]; then
  node dist/tools/cli.js example
fi
