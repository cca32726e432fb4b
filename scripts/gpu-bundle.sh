#!/usr/bin/env bash
# Packs what a bare GPU machine (CMake, nvcc, python3 with PyTorch; no Node.js, no FAISS, no
# BLAS) needs to run the CLI itself, for scripts/gpu-check.sh: the built addon (CUDA sm_80/sm_90
# code, as `npm run build` makes it on this machine), dist/ (the CLI and the tools), the
# node_modules the CLI loads at run time, this machine's node binary and the shared libraries the
# addon and node load that a bare machine may lack. One xz tarball, checked to be under 64 MiB.
#
#   npm run build && bash scripts/gpu-bundle.sh [OUT]     # OUT: build-bundle/gpu-bundle.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
OUTF=${1:-build-bundle/gpu-bundle.tar.xz}
LIMIT=$((64 * 1024 * 1024))
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/semdedup-bundle-XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

ADDON=build/Release/semdedup.node
[ -f "$ADDON" ] || { echo "gpu-bundle: $ADDON is missing: run npm run build first" >&2; exit 1; }
[ -f dist/src/cli.js ] || { echo "gpu-bundle: dist/ is missing: run npm run build:ts first" >&2; exit 1; }
node -e "const i=require('./$ADDON').info(); if(!i.cuda.compiled){console.error('gpu-bundle: the addon was built without CUDA (nvcc not found)');process.exit(1)}"

mkdir -p "$STAGE/build/Release" "$STAGE/bin" "$STAGE/lib" "$STAGE/node_modules"
cp "$ADDON" "$STAGE/build/Release/"
# the CLI and the tools, without tests and source maps
(cd dist && find src tools -name '*.js' | while read -r f; do mkdir -p "$STAGE/dist/$(dirname "$f")"; cp "$f" "$STAGE/dist/$f"; done)
cp package.json "$STAGE/"
cp -r configs "$STAGE/"
for m in commander yaml; do cp -rL "node_modules/$m" "$STAGE/node_modules/"; done
NODE_BIN=$(command -v node)
cp -L "$NODE_BIN" "$STAGE/bin/node"
# Shared libraries: BLAS and its runtime, OpenMP, and the C++ runtime this build was linked
# against (a bare machine may have an older libstdc++).
for lib in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libgomp.so.1 libstdc++.so.6 libgcc_s.so.1; do
  path=$( (ldd "$ADDON"; ldd "$NODE_BIN") | awk -v l="$lib" '$1 == l { print $3; exit }')
  [ -n "$path" ] || path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
  [ -n "$path" ] || { echo "gpu-bundle: $lib not found" >&2; exit 1; }
  cp -L "$path" "$STAGE/lib/$lib"
done
cat >"$STAGE/semdedup" <<'EOF'
#!/usr/bin/env bash
# The CLI from the bundle: its node and its libraries.
here=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/node" "$here/dist/src/cli.js" "$@"
EOF
chmod +x "$STAGE/semdedup"
git rev-parse HEAD >"$STAGE/COMMIT" 2>/dev/null || true

mkdir -p "$(dirname "$OUTF")"
tar -C "$STAGE" -cf - . | xz -T0 -3 >"$OUTF.partial"
mv "$OUTF.partial" "$OUTF"
size=$(stat -c %s "$OUTF")
echo "gpu-bundle: $OUTF, $((size / 1024 / 1024)) MiB ($(du -sh "$STAGE" | cut -f1) unpacked)"
if [ "$size" -ge "$LIMIT" ]; then
  echo "gpu-bundle: over 64 MiB" >&2
  exit 1
fi
