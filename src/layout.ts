// The run folder: every path the engine reads or writes in an output folder (the original's
// `save_folder`), the only module that builds them. The original's files keep their names at the
// top of the folder (centroids, assignment, kept lists, the sorted clusters folder); our own files
// live in `semdedup/` (the step files, the manifest, the lock, the summary, a planned run's plan
// and parts); the after-the-run commands' default outputs sit at the top, beside the kept lists.
import { join } from 'node:path';

const OURS = 'semdedup';

export const outputs = {
  centroids: (dir: string) => join(dir, 'kmeans_centroids.npy'),
  nearest: (dir: string) => join(dir, 'nearest_cent.npy'),
  dist: (dir: string) => join(dir, 'dist_to_cent.npy'),
  /** The original's per-cluster tables (export_sorted_clusters), when the config names no sorted_clusters_dir. */
  sortedClusters: (dir: string) => join(dir, 'sorted_clusters'),
  /** One exported cluster table in a sorted clusters folder. */
  sortedCluster: (sortedDir: string, c: number) => join(sortedDir, `cluster_${c}.npy`),
  /** Step 5: the kept (or removed) ids of one eps, one per line (`semdedup run`). */
  keptList: (dir: string, eps: number) => join(dir, `kept_eps${eps}.txt`),
  manifest: (dir: string) => join(dir, OURS, 'manifest.json'),
  ours: (dir: string) => join(dir, OURS),
  /** The folder's lock (lock.ts): held by every command that works in the folder. */
  lock: (dir: string) => join(dir, OURS, 'lock'),
  /** Held exclusive by a planned run's executor (two planned runs never share a folder). */
  planLock: (dir: string) => join(dir, OURS, 'plan.lock'),
  /** An L2-normalised float32 copy of the embeddings (normalize: always). */
  normalized: (dir: string) => join(dir, OURS, 'normalized_embeddings.f32'),
  /** Step 3: rows grouped by cluster, each cluster ranked (int64, N). */
  order: (dir: string) => join(dir, OURS, 'cluster_order.npy'),
  /** Step 3: cluster c is positions [offsets[c], offsets[c+1]) of the order (int64, k + 1). */
  offsets: (dir: string) => join(dir, OURS, 'cluster_offsets.npy'),
  /** Step 3: the distance to the centroid that ranked each position (float32, N). */
  sortKey: (dir: string) => join(dir, OURS, 'cluster_distance.npy'),
  /** Step 4: rows in keep order (hard / easy / random within each cluster) (int64, N). */
  keepOrder: (dir: string) => join(dir, OURS, 'keep_order.npy'),
  /** Step 4: the original's `indices` column: each keep-order position's place in the step-3 order of its cluster (int64, N). */
  keepIndex: (dir: string) => join(dir, OURS, 'keep_index.npy'),
  /** Step 4: M per keep-order position (float64, N). */
  M: (dir: string) => join(dir, OURS, 'M.npy'),
  /** Step 4: the earlier row that reached M, or -1 (int64, N). */
  Marg: (dir: string) => join(dir, OURS, 'M_row.npy'),
  /** Step 4: partial results of an interrupted run (resumed, then removed). */
  parts: (dir: string) => join(dir, OURS, 'parts'),
  /** Step 4 (exact_duplicates) and `semdedup exact-duplicates`: (row, first row) pairs (int64, copies × 2). */
  exactDuplicates: (dir: string) => join(dir, OURS, 'exact_duplicates.npy'),
  /** Step 4/5: kept and removed counts per eps (one writer: writeSummary in steps/dedup.ts). */
  summary: (dir: string) => join(dir, OURS, 'summary.json'),
  /** Step 5: kept row indices for one eps (int64). */
  keptRows: (dir: string, eps: number) => join(dir, OURS, `kept_rows_eps${eps}.npy`),
  /** Parquet inputs converted once for the run (inputs.ts): the folder, embeddings, ids, a ranking column. */
  importDir: (dir: string) => join(dir, OURS, 'import'),
  importedEmbeddings: (dir: string) => join(dir, OURS, 'import', 'embeddings.npy'),
  importedIds: (dir: string) => join(dir, OURS, 'import', 'ids.txt'),
  importedRank: (dir: string, column: string) => join(dir, OURS, 'import', `rank_${encodeURIComponent(column)}.npy`),
  /** A planned run's plan, and the folder of its tasks' states, parts, logs and SLURM scripts (plan/plan.ts: planPaths). */
  plan: (dir: string) => join(dir, OURS, 'plan.json'),
  planRoot: (dir: string) => join(dir, OURS, 'plan'),
  /** `semdedup report`'s default file. */
  report: (dir: string) => join(dir, 'report.html'),
  /** `semdedup explain`'s default file (`near`: the near-duplicates variant; ext: csv or jsonl). */
  explain: (dir: string, eps: number, near: boolean, ext: string) => join(dir, `explain_eps${eps}${near ? '_near' : ''}.${ext}`),
  /** `semdedup decontaminate`'s default kept list. */
  decontaminated: (dir: string, eps: number) => join(dir, `decontaminated_eps${eps}.txt`),
  /** `semdedup decontaminate`'s default file of the removed rows and their matches. */
  decontaminatedMatches: (dir: string, eps: number) => join(dir, `decontaminated_eps${eps}_matches.csv`),
};
