#!/usr/bin/env bash
# Start-up cost of the `semdedup` command (after `npm run build:ts`), measured as the process's CPU
# time (user + system, /usr/bin/time) and wall time, the median of R runs, each against the median
# of `node -e ''` (the bare runtime) so that a loaded machine's slowness mostly cancels:
#   --version             parse the command line, print the version
#   info                  load the addon, print the engine's description
#   run, to first native  a `run` on a tiny input (200 × 16, k = 4) up to its first call into the
#                         addon (bench/first-native.cjs), i.e. Node + modules + addon + config + inputs
# Usage: bash bench/startup.sh [R]   (default R = 9; SEMDEDUP_CLI=path/to/cli.js measures another build)
set -euo pipefail
R=${1:-9}
cd "$(dirname "$0")/.."
CLI=${SEMDEDUP_CLI:-dist/src/cli.js}
[ -f "$CLI" ] || { echo "build first: npm run build:ts" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
node -e 'const a=new Float32Array(200*16);let s=7;for(let i=0;i<a.length;i++){s=(s*1103515245+12345)>>>0;a[i]=s/2**32-0.5;}for(let r=0;r<200;r++){const v=a.subarray(r*16,r*16+16);const n=Math.hypot(...v);for(let j=0;j<16;j++)v[j]/=n;}require("fs").writeFileSync(process.argv[1],Buffer.from(a.buffer));' "$tmp/tiny.f32"

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# measure NAME CMD...: R runs; prints the medians of CPU and wall seconds
measure() {
  local name=$1; shift
  : > "$tmp/cpu"; : > "$tmp/wall"
  for _ in $(seq "$R"); do
    /usr/bin/time -f '%U %S %e' -o "$tmp/t" "$@" > /dev/null
    awk '{print $1+$2}' "$tmp/t" >> "$tmp/cpu"; awk '{print $3}' "$tmp/t" >> "$tmp/wall"
  done
  echo "$name $(median < "$tmp/cpu") $(median < "$tmp/wall")"
}
{
  measure node-e node -e ''
  measure version node "$CLI" --version
  measure info node "$CLI" info
  : > "$tmp/first"
  for i in $(seq "$R"); do
    rm -rf -- "$tmp/out"
    SEMDEDUP_FIRST_NATIVE="$tmp/first" node -r ./bench/first-native.cjs "$CLI" run "$tmp/tiny.f32" --dim 16 -k 4 -o "$tmp/out" -q > /dev/null
  done
  echo "first-native $(awk '{print $1}' "$tmp/first" | median) $(awk '{print $2}' "$tmp/first" | median) $(awk '{print $3}' "$tmp/first" | sort | uniq -c | sort -rn | awk 'NR==1{print $2}')"
} > "$tmp/res"
awk -v R="$R" 'NR==1 {c0=$2; w0=$3; printf "%-22s %9s %9s %12s %12s\n", "median of " R " runs", "CPU s", "wall s", "CPU - node", "wall - node"}
  {printf "%-22s %9.3f %9.3f %12.3f %12.3f%s\n", $1, $2, $3, $2-c0, $3-w0, (NF>3 ? "  (first call: " $4 ")" : "")}' "$tmp/res"
