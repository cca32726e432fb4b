#!/usr/bin/env python3
"""After `semdedup embed` + `semdedup run` over the documentation corpus: how the kept ids treat
the corpus's exact duplicates (paragraphs with identical text, e.g. licence texts repeated across
copyright files). Identical texts have identical vectors (cosine 1): every group of them whose
members share a cluster must keep at most one member there (the random test model makes most texts near duplicates, so often none). SemDeDup compares members of one
cluster only, so identical rows that k-means assigned to different clusters (a near tie between two
centroids, decided differently by the blocked distance computation at different row positions,
as FAISS's search does) each keep one; those are counted apart.

  python3 bench/embed/check_kept.py corpus.jsonl EMB_DIR DEDUP_DIR EPS
"""
import glob
import json
import os
import sys
from collections import defaultdict

import numpy as np

corpus, emb, out, eps = sys.argv[1:5]
groups = defaultdict(list)
n = 0
with open(corpus, encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        groups[r["text"]].append(r["id"])
        n += 1
ids = []
for p in sorted(glob.glob(os.path.join(emb, "ids", "*.txt"))):
    ids += open(p, encoding="utf-8").read().rstrip("\n").split("\n")
assert len(ids) == n, (len(ids), n)
row = {i: k for k, i in enumerate(ids)}
nearest = np.load(os.path.join(out, "nearest_cent.npy"))
kept = set(open(os.path.join(out, f"kept_eps{eps}.txt"), encoding="utf-8").read().split("\n"))
dup = [g for g in groups.values() if len(g) > 1]
wrong = split = 0
for g in dup:
    by_cluster = defaultdict(list)
    for i in g:
        by_cluster[int(nearest[row[i]])].append(i)
    if len(by_cluster) > 1:
        split += 1
    for members in by_cluster.values():
        if sum(i in kept for i in members) > 1:
            wrong += 1
print(f"{n} paragraphs, {len(groups)} distinct texts; {len(dup)} groups of identical texts holding {sum(len(g) for g in dup)} rows")
print(f"eps {eps}: kept {len(kept)}; groups split across clusters by k-means: {split}; clusters of a group keeping more than one member: {wrong}")
sys.exit(1 if wrong else 0)
