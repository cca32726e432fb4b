#!/usr/bin/env python3
"""PyTorch reference for the GPU benchmark: the same steps as bench_cuda, written the way the
original SemDeDup code does them, on the same data (a raw float32 N x D file) and the same
clusters (clusters.bin written by bench_cuda). Prints one RESULT line per step and, given
bench_cuda's JSON, the comparison table.

  torch_reference.py --file X.f32 --n N --d D --k K --niter I --clusters clusters.bin
                     [--big B] [--ours bench_cuda.json] [--json out.json]

Steps (fp32 everywhere, TF32 disabled so that both sides do the same arithmetic):
  kmeans_train  a plain PyTorch spherical k-means on the same number of training rows as
                FAISS's subsample (k * 256), k / niter as given: x @ c.T, argmax, index_add_,
                divide, re-normalise.
  assign        every row's nearest centroid, in blocks moved host -> GPU.
  maxsim_all    per cluster, as the original semdedup(): gather the cluster's rows on the host,
                move them to the GPU, X @ X.T, fill_diagonal_(0), triu(diagonal=1), max over
                dim 0.
  maxsim_big    the same on one cluster of B rows (rows 0 .. B-1).
  maxsim_nemo_* with --nemo: NeMo Curator's loop (rows on the card, 1024-member batches) in fp32
                and bf16, with the decisions that differ from float64 at eps 0.01/0.05/0.1.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch

H100_FP32_TFLOPS = 67.0   # dense fp32 (SXM), datasheet
H100_TF32_TFLOPS = 494.7  # dense tf32 tensor cores (SXM), datasheet (989 with sparsity)


def sync():
    torch.cuda.synchronize()


def timed(fn, repeat=1):
    times = []
    out = None
    for _ in range(repeat):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return times[len(times) // 2], out


def kmeans_train(x_host, k, niter, seed=1234, max_points=256):
    g = torch.Generator().manual_seed(seed)
    n = x_host.shape[0]
    nt = min(n, k * max_points)
    idx = torch.randperm(n, generator=g)[:nt].numpy()
    idx.sort()
    xt = torch.from_numpy(x_host[idx]).cuda()
    c = xt[torch.randperm(nt, generator=g)[:k].cuda()].clone()
    c = torch.nn.functional.normalize(c, dim=1)
    for _ in range(niter):
        sims = xt @ c.T
        assign = sims.argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, xt)
        counts = torch.bincount(assign, minlength=k).clamp_min(1).to(c.dtype)
        c = torch.nn.functional.normalize(sums / counts[:, None], dim=1)
    sync()
    return c, nt


def assign_all(x_host, c, block=65536):
    n = x_host.shape[0]
    nearest = torch.empty(n, dtype=torch.int64)
    dist = torch.empty(n, dtype=torch.float32)
    for b in range(0, n, block):
        xb = torch.from_numpy(x_host[b:b + block]).cuda(non_blocking=False)
        s = xb @ c.T
        v, i = s.max(dim=1)
        nearest[b:b + block] = i.cpu()
        dist[b:b + block] = v.cpu()
    return nearest, dist


def maxsim_cluster(x_host, rows):
    """The original's per-cluster computation (semdedup.py): X @ X.T, zero the diagonal, keep the
    strict upper triangle, column max."""
    cluster_reps = torch.from_numpy(x_host[rows]).cuda()
    pair_w_sim_matrix = cluster_reps @ cluster_reps.T
    pair_w_sim_matrix.fill_diagonal_(0.0)
    triu_sim_mat = torch.triu(pair_w_sim_matrix, diagonal=1)
    M = torch.max(triu_sim_mat, dim=0)[0]
    return M.cpu()


def maxsim_nemo(x_dev, order, offsets, k, dtype, batch=1024):
    """NeMo Curator's way (semantic_dedup's pairwise_cosine_similarity_batched): the rows already
    on the card, per cluster in column batches of 1024 members, each batch against the earlier
    members, max over them (masked entries count as 0, as the original's triu)."""
    out = []
    for ci in range(k):
        lo, hi = int(offsets[ci]), int(offsets[ci + 1])
        if hi == lo:
            continue
        reps = x_dev[torch.from_numpy(np.ascontiguousarray(order[lo:hi])).cuda()].to(dtype)
        n = reps.shape[0]
        M = torch.empty(n, device="cuda", dtype=torch.float64 if dtype == torch.float64 else torch.float32)
        for s in range(0, n, batch):
            e = min(n, s + batch)
            sim = (reps[:e] @ reps[s:e].T).to(M.dtype)
            rows = torch.arange(e, device="cuda")[:, None]
            cols = torch.arange(s, e, device="cuda")[None, :]
            M[s:e] = sim.masked_fill(rows >= cols, 0).max(dim=0).values
        out.append(M)
    return torch.cat(out).double().cpu()


def changed_decisions(M, M64, eps_list=(0.01, 0.05, 0.1), tol=1e-5):
    """Members whose decision differs from float64's, where float64's M is further than the
    contract's 1e-5 from the threshold."""
    n = 0
    for eps in eps_list:
        t = 1 - eps
        far = (M64 - t).abs() > tol
        n += int(((M > t) != (M64 > t))[far].sum())
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--clusters", required=True)
    ap.add_argument("--big", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ours", default=None, help="bench_cuda.json, for the comparison table")
    ap.add_argument("--json", default=None)
    ap.add_argument("--nemo", action="store_true", help="also time NeMo Curator's per-cluster batched loop (fp32, bf16)")
    a = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, device {dev}", flush=True)

    x = np.fromfile(a.file, dtype=np.float32, count=a.n * a.d).reshape(a.n, a.d)
    with open(a.clusters, "rb") as f:
        k = int(np.frombuffer(f.read(8), dtype=np.int64)[0])
        offsets = np.frombuffer(f.read(8 * (k + 1)), dtype=np.int64)
        order = np.frombuffer(f.read(8 * a.n), dtype=np.int64)

    # warm-up: CUDA context, cuBLAS handle and kernels
    w = torch.from_numpy(x[:4096]).cuda()
    (w @ w.T).max()
    sync()

    res = {}

    def report(step, ms, gflop):
        res[step] = {"ms": ms, "gflop": gflop}
        print(f"RESULT step={step} ms={ms:.3f} gflop={gflop:.3f} gflops={gflop / (ms / 1000) if ms > 0 else 0:.1f}",
              flush=True)

    ms, (c, nt) = timed(lambda: kmeans_train(x, a.k, a.niter))
    report("kmeans_train", ms, a.niter * 2.0 * nt * a.k * a.d / 1e9)

    ms, _ = timed(lambda: assign_all(x, c))
    report("assign", ms, 2.0 * a.n * a.k * a.d / 1e9)

    useful = 0.0
    for ci in range(k):
        m = int(offsets[ci + 1] - offsets[ci])
        useful += m * (m - 1) * a.d

    def all_clusters():
        for ci in range(k):
            lo, hi = int(offsets[ci]), int(offsets[ci + 1])
            if hi - lo == 0:
                continue
            maxsim_cluster(x, order[lo:hi])

    ms, _ = timed(all_clusters, a.repeat)
    report("maxsim_all", ms, useful / 1e9)

    if 1 < a.big <= a.n:
        rows = np.arange(a.big)
        try:
            ms, _ = timed(lambda: maxsim_cluster(x, rows), a.repeat)
            report("maxsim_big", ms, a.big * (a.big - 1.0) * a.d / 1e9)
        except torch.cuda.OutOfMemoryError:
            print(f"maxsim_big: out of GPU memory for the {a.big} x {a.big} matrix", flush=True)
        torch.cuda.empty_cache()

    if a.nemo:
        # NeMo-style loops, rows on the card; decisions against float64 on the same clusters
        x_dev = torch.from_numpy(x).cuda()
        M64 = maxsim_nemo(x_dev, order, offsets, k, torch.float64)
        for name, dt in (("maxsim_nemo_fp32", torch.float32), ("maxsim_nemo_bf16", torch.bfloat16)):
            maxsim_nemo(x_dev, order, offsets, min(k, 8), dt)  # warm-up
            ms, M = timed(lambda: maxsim_nemo(x_dev, order, offsets, k, dt), a.repeat)
            report(name, ms, useful / 1e9)
            res[name]["changed"] = changed_decisions(M, M64)
            print(f"NEMO step={name} changed_decisions={res[name]['changed']} (eps 0.01/0.05/0.1, against float64)",
                  flush=True)
        del x_dev
        torch.cuda.empty_cache()

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": dev, "steps": res}, f, indent=1)

    if a.ours:
        with open(a.ours) as f:
            ours = {s["step"]: s for s in json.load(f)["steps"]}
        print()
        print("| step | ours ms | torch ms | torch/ours | our GFLOP/s | % fp32 peak | % tf32 peak | torch GFLOP/s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for step in ["kmeans_train", "assign", "maxsim_all", "maxsim_big", "rank_cpu"]:
            o = ours.get(step)
            t = res.get(step)
            if o is None:
                continue
            og = o["gflop"] / (o["ms"] / 1000) if o["ms"] > 0 and o["gflop"] > 0 else 0.0
            tms = f"{t['ms']:.1f}" if t else "-"
            ratio = f"{t['ms'] / o['ms']:.2f}" if t and o["ms"] > 0 else "-"
            tg = f"{t['gflop'] / (t['ms'] / 1000):.0f}" if t and t["ms"] > 0 and t["gflop"] > 0 else "-"
            print(f"| {step} | {o['ms']:.1f} | {tms} | {ratio} | {og:.0f} | {100 * og / 1000 / H100_FP32_TFLOPS:.1f} | "
                  f"{100 * og / 1000 / H100_TF32_TFLOPS:.1f} | {tg} |")
        o = ours.get("maxsim_all")
        for name in ("maxsim_nemo_fp32", "maxsim_nemo_bf16"):
            t = res.get(name)
            if o and t and o["ms"] > 0:
                print(f"| {name} (vs our maxsim_all) | {o['ms']:.1f} | {t['ms']:.1f} | {t['ms'] / o['ms']:.2f} | - | - | - | "
                      f"{t['gflop'] / (t['ms'] / 1000):.0f} (changed decisions {t.get('changed', '-')}) |")
        print("(GFLOP/s count useful work: 2 N k D per assignment pass; n(n-1) D per cluster for max similarity; "
              f"peaks: H100 SXM fp32 {H100_FP32_TFLOPS} TFLOP/s, tf32 {H100_TF32_TFLOPS} TFLOP/s dense)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
