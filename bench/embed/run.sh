#!/usr/bin/env bash
# Texts → kept ids on this machine's own documentation (120,000 paragraphs), with the test model
# of test/embed.test.ts (random weights; two sizes): semdedup embed, then the printed semdedup run,
# then the check of the corpus's identical paragraphs. Prints the figures of bench/embed/RESULTS.md.
#   bash bench/embed/run.sh [OUT]        # default bench/out/embed; needs npm run build:ts
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${1:-bench/out/embed}
PY=${SEMDEDUP_PYTHON:-/usr/bin/python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
"$PY" bench/embed/corpus.py "$OUT/corpus.jsonl" --max 120000
for spec in "16 32" "128 64"; do
  read -r seq hidden <<<"$spec"
  dir="$OUT/seq$seq-h$hidden"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$PY" test/fixtures/embed_model.py build "$dir/model" --max-seq "$seq" --hidden "$hidden"
  echo "== test model: WordPiece, max_seq_length $seq, hidden $hidden, 2 layers, mean pooling, normalised"
  (cd "$dir" && /usr/bin/time -f "embed: wall %e s, max RSS %M KB, CPU %P" node "$ROOT/dist/src/cli.js" embed --model model \
     --input "$OUT/corpus.jsonl" --id-field id -o emb --json >embed.json 2>embed.err) || { cat "$dir/embed.err"; exit 1; }
  tail -1 "$dir/embed.err"
  "$PY" - "$dir/embed.json" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["seconds"]
busy = sum(s[k] for k in ("read", "tokenize", "infer", "pool", "write"))
print(f"{r['rows']} rows x {r['dim']} ({r['dtype']}), {r['shards']} shards, {r['rowsPerSecond']:.0f} rows/s, total {s['total']:.1f} s")
print("  " + ", ".join(f"{k} {s[k]:.1f} s ({100 * s[k] / busy:.0f}%)" for k in ("read", "tokenize", "infer", "pool", "write")))
print("  next: " + r["next"])
PYEOF
  next=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["next"])' "$dir/embed.json")
  read -r -a argv <<<"${next#semdedup }"
  (cd "$dir" && /usr/bin/time -f "run: wall %e s, max RSS %M KB" node "$ROOT/dist/src/cli.js" "${argv[@]}" --eps-list 0.01 -q >run.out 2>run.err) || { cat "$dir/run.err"; exit 1; }
  cat "$dir/run.out"; tail -1 "$dir/run.err"
  "$PY" bench/embed/check_kept.py "$OUT/corpus.jsonl" "$dir/emb" "$dir/emb-dedup" 0.01
done
