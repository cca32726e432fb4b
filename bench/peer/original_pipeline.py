#!/usr/bin/python3
"""Reference peer: the original SemDeDup pipeline (facebookresearch/SemDeDup), steps 2-5,
run in one process on CPU the way a user of the original would run it.

Step 2  clustering/clustering.py      compute_centroids   (faiss.Kmeans, then index.search)
Step 3  clustering/sort_clusters.py   rank_within_cluster (pandas per-cluster .loc, sorted(), np.save)
Step 4  semdedup.py                   SemDeDupJob          (torch n x n product, triu, column max)
Step 5  extract_dedup_data.py         extract_pruned_data  ("\\n".join of kept paths)

The SLURM/submitit scaffolding of the original is replaced by a single job that processes
clusters 0..k-1 in order. See bench/peer/README.md for the points where the original had to be
interpreted. Run with Debian's interpreter: /usr/bin/python3 bench/peer/original_pipeline.py -h
"""

import argparse
import json
import os
import pickle
import random
import resource
import shutil
import sys
import tempfile
import time

import faiss
import numpy as np
import pandas as pd
import torch

ALL_STAGES = ["kmeans_train", "assign", "rank", "semdedup", "extract"]
STAGE_ALIASES = {"kmeans": ["kmeans_train", "assign"], "all": ALL_STAGES}

# Column positions inside a sorted cluster file (constants.py of the original).
IMAGE_NAME_INDEX = 0
IMAGE_ID_IN_CLUSTER_INDEX = 1
DIST_METRIC_INDEX = 2
CLUSTER_NUM_INDEX = 3


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------
def open_embeddings(path, n, d):
    """Raw float32 memmap without header (as the original stores embeddings); .npy also accepted."""
    if path.endswith(".npy"):
        embs = np.load(path, mmap_mode="r")
        if embs.dtype != np.float32 or embs.ndim != 2:
            raise SystemExit(f"{path}: expected a 2-D float32 array, got {embs.dtype} {embs.shape}")
        return embs
    if n is None or d is None:
        raise SystemExit("--n and --d are required for a raw memmap")
    return np.memmap(path, dtype="float32", mode="r", shape=(n, d))


def open_paths(path, dtype, n):
    """Fixed-width bytes memmap (path_str_dtype, e.g. S24); without one, row numbers as strings."""
    if path is None:
        return np.arange(n).astype(str)
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,))


# --------------------------------------------------------------------------------------
# Step 2: k-means (compute_centroids)
# --------------------------------------------------------------------------------------
def kmeans_train(data, ncentroids, niter, seed, spherical, save_folder):
    d = data.shape[1]
    # The original clusters on GPU when torch sees one; this only applies with a GPU faiss build.
    use_gpu = torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources")
    kmeans = faiss.Kmeans(
        d,
        ncentroids,
        niter=niter,
        verbose=False,
        seed=seed,
        spherical=spherical,
        gpu=use_gpu,
    )
    kmeans.train(data)  # faiss subsamples max_points_per_centroid * k rows itself
    np.save(os.path.join(save_folder, "kmeans_centroids.npy"), kmeans.centroids)
    index = kmeans.index
    if use_gpu:
        index = faiss.index_gpu_to_cpu(index)
    return index


def index_from_centroids(centroids, spherical):
    """The index faiss.Kmeans leaves behind: a flat IP index (spherical) or flat L2 index
    holding the centroids."""
    centroids = np.ascontiguousarray(centroids, dtype="float32")
    index = faiss.IndexFlatIP(centroids.shape[1]) if spherical else faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    return index


def assign(data, index, save_folder):
    # dist_to_cent: inner product (IndexFlatIP) or squared L2 distance (IndexFlatL2)
    dist_to_cent, nearest_cent = index.search(data, 1)
    dist_to_cent, nearest_cent = dist_to_cent.squeeze(1), nearest_cent.squeeze(1)
    np.save(os.path.join(save_folder, "dist_to_cent.npy"), dist_to_cent)
    np.save(os.path.join(save_folder, "nearest_cent.npy"), nearest_cent)
    return dist_to_cent, nearest_cent


# --------------------------------------------------------------------------------------
# Step 3: sort each cluster (assign_and_sort_clusters / rank_within_cluster)
# --------------------------------------------------------------------------------------
def rank_within_cluster(data, dist_df, centroids, sim_metric, keep_hard, spherical,
                        cluster_ids, sorted_clusters_file_loc, fast=False):
    assert sim_metric in ("cosine", "l2"), "sim_metric should be one of ['cosine', 'l2']"
    os.makedirs(sorted_clusters_file_loc, exist_ok=True)

    groups = None
    if fast:
        # Optional: one groupby pass instead of one full-table scan per cluster (same members,
        # same row order inside each group).
        groups = dist_df.groupby("nearest_cent", sort=False).indices

    for cluster_c in cluster_ids:
        if groups is None:
            cluster_df = dist_df.loc[dist_df["nearest_cent"] == cluster_c]
        else:
            cluster_df = dist_df.iloc[groups.get(cluster_c, np.empty(0, dtype=np.int64))]

        cluster_items = list(cluster_df.index)  # dataset rows of the members of cluster c
        if sim_metric == "cosine":
            if spherical:
                cluster_dists_to_cent = list(1 - cluster_df["dist_to_cent"])
            else:
                cluster_c_centroid = torch.Tensor(centroids[cluster_c])
                sim_to_cent = torch.nn.CosineSimilarity(dim=1)(
                    torch.Tensor(data[cluster_items]), cluster_c_centroid
                )
                cluster_dists_to_cent = (1 - sim_to_cent).tolist()
        else:  # l2: the squared L2 distance faiss returned
            cluster_dists_to_cent = list(cluster_df["dist_to_cent"])

        cluster_label = np.full((len(cluster_df)), cluster_c).tolist()
        example_paths = list(cluster_df["paths_list"])
        # sorted() is stable, also with reverse=True: equal distances keep ascending row order
        cluster_sorted = sorted(
            zip(example_paths, cluster_items, cluster_dists_to_cent, cluster_label),
            key=lambda item: item[2],
            reverse=keep_hard,
        )
        np.save(f"{sorted_clusters_file_loc}/cluster_{cluster_c}.npy", cluster_sorted)


def assign_and_sort_clusters(data, paths_list, nearest_cent, dist_to_cent, centroids, sim_metric,
                             keep_hard, kmeans_with_cos_dist, sorted_clusters_file_loc, k,
                             fast=False):
    assert sim_metric in ("l2", "cosine"), f"Unsupported similarity metric '{sim_metric}'."
    assert not (kmeans_with_cos_dist and sim_metric == "l2"), \
        "Cannot use cosine distance with L2 similarity metric."
    dist_df = pd.DataFrame(
        {
            "paths_list": paths_list,
            "nearest_cent": nearest_cent,
            "dist_to_cent": dist_to_cent,
        }
    )
    rank_within_cluster(data, dist_df, centroids, sim_metric, keep_hard, kmeans_with_cos_dist,
                        range(k), sorted_clusters_file_loc, fast=fast)


# --------------------------------------------------------------------------------------
# Step 4: SemDeDup per cluster (semdedup.py, SemDeDupJob)
# --------------------------------------------------------------------------------------
def _contains_duplicates(arr):
    return len(np.unique(arr)) != len(arr)


def semdedup_cluster(cluster, cluster_reps):
    # pairwise cosine similarity (rows are normalised), self similarity zeroed
    pair_w_sim_matrix = cluster_reps @ (cluster_reps.T)
    del cluster_reps
    pair_w_sim_matrix.fill_diagonal_(0.0)
    assert pair_w_sim_matrix.shape[0] == pair_w_sim_matrix.shape[1]

    # paths must be unique inside a cluster
    image_urls = cluster[:, IMAGE_NAME_INDEX]
    assert not _contains_duplicates(image_urls)

    # strict upper triangle: each pair once, column j sees only the members before j
    triu_sim_mat = torch.triu(pair_w_sim_matrix, diagonal=1)
    # remove member j when its largest similarity to an earlier member is > 1 - eps
    M = torch.max(triu_sim_mat, dim=0)[0].cpu()
    return M


def run_semdedup(embs, sorted_clusters_path, save_loc, k, eps_list, which_to_keep, seed):
    df_dir = os.path.join(save_loc, "dataframes")
    os.makedirs(df_dir, exist_ok=True)
    random.seed(seed)  # once per job (SemDeDupJob.__init__); one job does all clusters here

    all_M = []
    all_rows = []
    for cluster_id in range(k):
        df_file_loc = os.path.join(df_dir, f"cluster_{cluster_id}.pkl")
        cluster_i = np.load(os.path.join(sorted_clusters_path, f"cluster_{cluster_id}.npy"))
        cluster_size = cluster_i.shape[0]

        if cluster_size == 0:
            # The original does not handle an empty cluster (its 1-D empty file cannot be
            # indexed by column); here it simply gets an empty table.
            points_to_remove_df = pd.DataFrame({"indices": np.empty(0, dtype=np.int64)})
            for eps in eps_list:
                points_to_remove_df[f"eps={eps}"] = np.empty(0, dtype=bool)
            with open(df_file_loc, "wb") as file:
                pickle.dump(points_to_remove_df, file)
            continue

        if cluster_size == 1:
            points_to_remove_df = pd.DataFrame()
            points_to_remove_df["indices"] = [0]
            for eps in eps_list:
                points_to_remove_df[f"eps={eps}"] = [False]
            with open(df_file_loc, "wb") as file:
                pickle.dump(points_to_remove_df, file)
            all_M.append(np.zeros(1, dtype=np.float32))
            all_rows.append(cluster_i[:, IMAGE_ID_IN_CLUSTER_INDEX].astype("int64"))
            continue

        # hard (default): keep the step-3 order; random: shuffle; easy: reverse
        clutser_items_indices = list(range(cluster_size))
        if which_to_keep.lower() == "random":
            random.shuffle(clutser_items_indices)
            cluster_i = cluster_i[clutser_items_indices]
        if which_to_keep.lower() == "easy":
            clutser_items_indices = clutser_items_indices[::-1]
            cluster_i = cluster_i[clutser_items_indices]

        # dataset rows of the cluster items
        cluster_ids = cluster_i[:, IMAGE_ID_IN_CLUSTER_INDEX].astype("int32")
        cluster_reps = embs[cluster_ids]
        cluster_reps = torch.tensor(cluster_reps)

        M = semdedup_cluster(cluster_i, cluster_reps)

        points_to_remove_df = pd.DataFrame()
        points_to_remove_df["indices"] = clutser_items_indices
        for eps in eps_list:
            points_to_remove_df[f"eps={eps}"] = M > 1 - eps
        with open(df_file_loc, "wb") as file:
            pickle.dump(points_to_remove_df, file)

        all_M.append(M.numpy().astype(np.float32, copy=False))
        all_rows.append(cluster_ids.astype(np.int64))

    M_cat = np.concatenate(all_M) if all_M else np.empty(0, dtype=np.float32)
    rows_cat = np.concatenate(all_rows) if all_rows else np.empty(0, dtype=np.int64)
    np.save(os.path.join(save_loc, "M.npy"), M_cat)
    np.save(os.path.join(save_loc, "M_rows.npy"), rows_cat)


# --------------------------------------------------------------------------------------
# Step 5: extract (extract_pruned_data)
# --------------------------------------------------------------------------------------
def extract_pruned_data(sorted_clusters_path, semdedup_pruning_tables_path, eps, num_clusters,
                        output_txt_path, retreive_kept_samples=True):
    example_paths = []
    col = f"eps={eps}"
    for cluster_id in range(num_clusters):
        cluster_i = np.load(os.path.join(sorted_clusters_path, f"cluster_{cluster_id}.npy"))
        with open(f"{semdedup_pruning_tables_path}/cluster_{cluster_id}.pkl", "rb") as file:
            semdedup_pruning_tables = pickle.load(file)
        if cluster_i.shape[0] == 0:
            continue  # empty cluster (see run_semdedup)

        # True in the table = remove; positions are in the table's (semdedup) order
        images_to_keep_or_remove = semdedup_pruning_tables[col][
            semdedup_pruning_tables[col] == (not retreive_kept_samples)
        ].index.to_numpy()
        if "indices" in semdedup_pruning_tables.columns:
            cluster_i = cluster_i[semdedup_pruning_tables["indices"]]
        dedup_cluster = cluster_i[images_to_keep_or_remove]
        example_paths += dedup_cluster[:, IMAGE_NAME_INDEX].astype("<U32").tolist()

    with open(output_txt_path, "w") as fp:
        fp.write("\n".join(example_paths))  # no trailing newline, as the original
    return len(example_paths)


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def parse_stages(text):
    stages = []
    for name in text.split(","):
        name = name.strip()
        if not name:
            continue
        expanded = STAGE_ALIASES.get(name, [name])
        for s in expanded:
            if s not in ALL_STAGES:
                raise SystemExit(f"unknown stage {name!r}; stages: {','.join(ALL_STAGES)} (or kmeans, all)")
            if s not in stages:
                stages.append(s)
    return [s for s in ALL_STAGES if s in stages]


def parse_eps_list(text):
    return [float(x) for x in text.split(",") if x.strip()]


def peak_rss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def run_pipeline(args):
    t_start = time.perf_counter()
    stages = parse_stages(args.stages)
    eps_list = parse_eps_list(args.eps_list)
    out = args.out
    os.makedirs(out, exist_ok=True)
    sorted_dir = os.path.join(out, "sorted_clusters")
    df_dir = os.path.join(out, "dataframes")

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    assert args.sim_metric in ("cosine", "l2")
    assert not (args.spherical and args.sim_metric == "l2"), \
        "Cannot use cosine distance with L2 similarity metric."

    embs = open_embeddings(args.emb, args.n, args.d)
    n, d = embs.shape
    k = args.k
    times = {s: None for s in ALL_STAGES}

    index = None
    if "kmeans_train" in stages and args.centroids is None:
        t0 = time.perf_counter()
        index = kmeans_train(embs, k, args.niter, args.seed, args.spherical, out)
        times["kmeans_train"] = time.perf_counter() - t0

    dist_to_cent = nearest_cent = None
    if "assign" in stages:
        t0 = time.perf_counter()
        if index is None:
            cent_file = args.centroids or os.path.join(out, "kmeans_centroids.npy")
            centroids = np.load(cent_file)
            if centroids.shape != (k, d):
                raise SystemExit(f"{cent_file}: shape {centroids.shape}, expected {(k, d)}")
            if args.centroids is not None:
                np.save(os.path.join(out, "kmeans_centroids.npy"), centroids.astype(np.float32))
            index = index_from_centroids(centroids, args.spherical)
        dist_to_cent, nearest_cent = assign(embs, index, out)
        times["assign"] = time.perf_counter() - t0

    if "rank" in stages:
        t0 = time.perf_counter()
        # The original skips clusters whose file already exists (resume after preemption);
        # a run here always starts from an empty folder so that it does the full work.
        shutil.rmtree(sorted_dir, ignore_errors=True)
        centroids = np.load(os.path.join(out, "kmeans_centroids.npy"))
        if nearest_cent is None:
            nearest_cent = np.load(os.path.join(out, "nearest_cent.npy"))
            dist_to_cent = np.load(os.path.join(out, "dist_to_cent.npy"))
        paths_list = open_paths(args.ids, args.ids_dtype, n)
        assign_and_sort_clusters(embs, paths_list, nearest_cent, dist_to_cent, centroids,
                                 args.sim_metric, args.keep_hard, args.spherical, sorted_dir, k,
                                 fast=args.fast_rank)
        times["rank"] = time.perf_counter() - t0

    if "semdedup" in stages:
        t0 = time.perf_counter()
        shutil.rmtree(df_dir, ignore_errors=True)  # same as above: no resume-skipping
        run_semdedup(embs, sorted_dir, out, k, eps_list, args.which_to_keep, args.seed)
        times["semdedup"] = time.perf_counter() - t0

    kept = {}
    if "extract" in stages:
        t0 = time.perf_counter()
        for eps in eps_list:
            kept[str(eps)] = extract_pruned_data(sorted_dir, df_dir, eps, k,
                                                 os.path.join(out, f"kept_eps{eps}.txt"))
        times["extract"] = time.perf_counter() - t0

    result = dict(times)
    result["total"] = time.perf_counter() - t_start
    result["peak_rss_kib"] = peak_rss_kib()
    result["stages"] = stages
    result["n"] = int(n)
    result["d"] = int(d)
    result["k"] = int(k)
    result["kept"] = kept
    result["torch_threads"] = torch.get_num_threads()
    result["faiss_threads"] = faiss.omp_get_max_threads()
    with open(os.path.join(out, "timings.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def build_parser():
    p = argparse.ArgumentParser(
        description="Original SemDeDup pipeline (steps 2-5) as a benchmark peer.")
    p.add_argument("--emb", help="raw float32 memmap (N x D) of embeddings, or a .npy file")
    p.add_argument("--n", type=int, help="number of rows N (raw memmap)")
    p.add_argument("--d", type=int, help="embedding size D (raw memmap)")
    p.add_argument("--ids", help="raw fixed-width bytes memmap of ids/paths; default: row numbers")
    p.add_argument("--ids-dtype", default="S24", help="dtype of --ids (path_str_dtype), default S24")
    p.add_argument("--out", help="output folder")
    p.add_argument("--k", type=int, help="number of clusters (ncentroids)")
    p.add_argument("--niter", type=int, default=20)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--spherical", dest="spherical", action="store_true", default=True,
                   help="spherical k-means, Kmeans_with_cos_dist (default)")
    p.add_argument("--no-spherical", dest="spherical", action="store_false")
    p.add_argument("--sim-metric", choices=["cosine", "l2"], default="cosine")
    p.add_argument("--keep-hard", dest="keep_hard", action="store_true", default=True,
                   help="sort clusters by distance to centroid, descending (default)")
    p.add_argument("--keep-easy-first", dest="keep_hard", action="store_false",
                   help="sort clusters by distance to centroid, ascending (keep_hard: false)")
    p.add_argument("--which-to-keep", choices=["hard", "easy", "random"], default="hard")
    p.add_argument("--eps-list", default="0.01,0.05,0.1")
    p.add_argument("--centroids", help="skip k-means training and assign with these (k x D .npy)")
    p.add_argument("--stages", default="all",
                   help="comma list of kmeans_train,assign,rank,semdedup,extract (or kmeans, all); "
                        "later stages reuse files in --out")
    p.add_argument("--fast-rank", action="store_true",
                   help="rank with one groupby instead of the original's per-cluster table scan")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (only when given)")
    p.add_argument("--selftest", action="store_true", help="run a small self-check and exit")
    return p


# --------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------
def _reference_M(embs, rows):
    """float64 M: largest similarity to an earlier member, clamped at 0 (M[0] = 0)."""
    x = np.asarray(embs[rows], dtype=np.float64)
    s = x @ x.T
    m = np.zeros(len(rows))
    for j in range(1, len(rows)):
        m[j] = max(0.0, s[:j, j].max())
    return m


def _check_run(out, embs, n, k, eps_list, exact_pairs, near_pairs, id_of):
    sorted_dir = os.path.join(out, "sorted_clusters")
    seen = np.zeros(n, dtype=np.int64)
    for c in range(k):
        a = np.load(os.path.join(sorted_dir, f"cluster_{c}.npy"))
        if a.shape[0] == 0:
            continue
        assert a.ndim == 2 and a.shape[1] == 4, a.shape
        assert (a[:, CLUSTER_NUM_INDEX].astype(np.int64) == c).all()
        seen[a[:, IMAGE_ID_IN_CLUSTER_INDEX].astype(np.int64)] += 1
    assert (seen == 1).all(), "every row must be in exactly one sorted cluster file"

    M = np.load(os.path.join(out, "M.npy"))
    rows = np.load(os.path.join(out, "M_rows.npy"))
    assert M.dtype == np.float32 and rows.dtype == np.int64 and len(M) == n == len(rows)
    assert sorted(rows.tolist()) == list(range(n))
    pos = 0
    max_err = 0.0
    for c in range(k):
        with open(os.path.join(out, "dataframes", f"cluster_{c}.pkl"), "rb") as f:
            table = pickle.load(f)
        m = len(table)
        ref = _reference_M(embs, rows[pos:pos + m])
        max_err = max(max_err, float(np.abs(ref - M[pos:pos + m]).max()) if m else 0.0)
        for eps in eps_list:
            assert (table[f"eps={eps}"].to_numpy() == (M[pos:pos + m] > 1 - eps)).all()
        pos += m
    assert max_err <= 1e-5, f"M differs from float64 by {max_err}"

    kept = {}
    for eps in eps_list:
        with open(os.path.join(out, f"kept_eps{eps}.txt")) as f:
            text = f.read()
        assert not text.endswith("\n")
        kept[eps] = set(text.split("\n")) if text else set()
    for a, b in exact_pairs:
        ka, kb = id_of(a) in kept[0.01], id_of(b) in kept[0.01]
        assert ka != kb, f"exact duplicate pair {a},{b}: exactly one must be kept at eps=0.01"
    # near copies (cosine ~0.999) are found when k-means puts them in the same cluster
    nearest = np.load(os.path.join(out, "nearest_cent.npy"))
    same = [(a, b) for a, b in near_pairs if nearest[a] == nearest[b]]
    assert len(same) >= 0.8 * len(near_pairs), f"only {len(same)} near pairs share a cluster"
    for a, b in same:
        ka, kb = id_of(a) in kept[0.05], id_of(b) in kept[0.05]
        assert ka != kb, f"near duplicate pair {a},{b}: exactly one must be kept at eps=0.05"
    for e1, e2 in zip(eps_list, eps_list[1:]):
        assert len(kept[e1]) >= len(kept[e2]), "kept count must not grow with eps"
    return max_err, {e: len(v) for e, v in kept.items()}


def selftest():
    n, d, k = 3000, 64, 10
    eps_list = [0.01, 0.05, 0.1]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    # planted structure: exact copies and near copies of random rows
    src = rng.permutation(n)
    exact_pairs = [(int(src[i]), int(src[i + 1])) for i in range(0, 200, 2)]
    near_pairs = [(int(src[i]), int(src[i + 1])) for i in range(200, 400, 2)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for a, b in exact_pairs:
        x[b] = x[a]
    for a, b in near_pairs:
        v = x[a] + 0.05 * rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
        x[b] = v / np.linalg.norm(v)

    tmp = tempfile.mkdtemp(prefix="semdedup_peer_selftest_")
    try:
        emb_path = os.path.join(tmp, "emb.f32")
        x.tofile(emb_path)
        ids_path = os.path.join(tmp, "ids.S24")
        np.array([f"img_{i:07d}.jpg" for i in range(n)], dtype="S24").tofile(ids_path)
        embs = np.memmap(emb_path, dtype="float32", mode="r", shape=(n, d))
        parser = build_parser()
        base = ["--emb", emb_path, "--n", str(n), "--d", str(d), "--k", str(k),
                "--eps-list", ",".join(map(str, eps_list))]

        # 1) full run, row-number ids
        out1 = os.path.join(tmp, "run1")
        r1 = run_pipeline(parser.parse_args(base + ["--out", out1]))
        err, kept = _check_run(out1, embs, n, k, eps_list, exact_pairs, near_pairs, str)
        print(f"selftest: full run ok, max |M - M64| = {err:.2e}, kept {kept}", file=sys.stderr)

        # 2) same centroids given explicitly, S24 ids, fast ranking: same assignment and order
        out2 = os.path.join(tmp, "run2")
        run_pipeline(parser.parse_args(
            base + ["--out", out2, "--ids", ids_path, "--fast-rank",
                    "--centroids", os.path.join(out1, "kmeans_centroids.npy")]))
        for name in ("nearest_cent.npy", "dist_to_cent.npy"):
            assert np.array_equal(np.load(os.path.join(out1, name)), np.load(os.path.join(out2, name))), name
        for c in range(k):
            a1 = np.load(os.path.join(out1, "sorted_clusters", f"cluster_{c}.npy"))
            a2 = np.load(os.path.join(out2, "sorted_clusters", f"cluster_{c}.npy"))
            assert a2.dtype.kind == "S"  # bytes ids give a bytes array, as in the original
            assert np.array_equal(a1[:, 1:], a2[:, 1:].astype(a1.dtype)), c
        assert np.array_equal(np.load(os.path.join(out1, "M.npy")), np.load(os.path.join(out2, "M.npy")))
        _check_run(out2, embs, n, k, eps_list, exact_pairs, near_pairs, lambda i: f"img_{i:07d}.jpg")
        print("selftest: --centroids / --ids / --fast-rank ok", file=sys.stderr)

        # 3) stages run separately reproduce the full run
        out3 = os.path.join(tmp, "run3")
        os.makedirs(out3)
        for name in ("kmeans_centroids.npy", "nearest_cent.npy", "dist_to_cent.npy"):
            shutil.copy(os.path.join(out1, name), out3)
        run_pipeline(parser.parse_args(base + ["--out", out3, "--stages", "rank"]))
        run_pipeline(parser.parse_args(base + ["--out", out3, "--stages", "semdedup,extract"]))
        for eps in eps_list:
            with open(os.path.join(out1, f"kept_eps{eps}.txt")) as f1, \
                    open(os.path.join(out3, f"kept_eps{eps}.txt")) as f3:
                assert f1.read() == f3.read()
        print("selftest: --stages ok", file=sys.stderr)

        # 4) other modes run and stay consistent
        for extra in (["--which-to-keep", "random"], ["--which-to-keep", "easy", "--keep-easy-first"],
                      ["--no-spherical"], ["--no-spherical", "--sim-metric", "l2"]):
            out4 = os.path.join(tmp, "run4")
            shutil.rmtree(out4, ignore_errors=True)
            run_pipeline(parser.parse_args(base + ["--out", out4] + extra))
            _check_run(out4, embs, n, k, eps_list, exact_pairs, near_pairs, str)
            print(f"selftest: {' '.join(extra)} ok", file=sys.stderr)
        r1["selftest"] = "passed"
        return r1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.selftest:
        result = selftest()
    else:
        missing = [f"--{a}" for a in ("emb", "out", "k") if getattr(args, a) is None]
        if missing:
            raise SystemExit(f"missing {' '.join(missing)}")
        result = run_pipeline(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
