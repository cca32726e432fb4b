// Where every output lives in the output folder (the original's `save_folder`).
// The original's files keep their names; our own columnar files live in `semdedup/`.
import { join } from 'node:path';

export const outputs = {
  centroids: (dir: string) => join(dir, 'kmeans_centroids.npy'),
  nearest: (dir: string) => join(dir, 'nearest_cent.npy'),
  dist: (dir: string) => join(dir, 'dist_to_cent.npy'),
  manifest: (dir: string) => join(dir, 'semdedup', 'manifest.json'),
  ours: (dir: string) => join(dir, 'semdedup'),
  /** An L2-normalised float32 copy of the embeddings (normalize: always). */
  normalized: (dir: string) => join(dir, 'semdedup', 'normalized_embeddings.f32'),
  /** Step 3: rows grouped by cluster, each cluster ranked (int64, N). */
  order: (dir: string) => join(dir, 'semdedup', 'cluster_order.npy'),
  /** Step 3: cluster c is positions [offsets[c], offsets[c+1]) of the order (int64, k + 1). */
  offsets: (dir: string) => join(dir, 'semdedup', 'cluster_offsets.npy'),
  /** Step 3: the distance to the centroid that ranked each position (float32, N). */
  sortKey: (dir: string) => join(dir, 'semdedup', 'cluster_distance.npy'),
  /** Step 4: rows in keep order (hard / easy / random within each cluster) (int64, N). */
  keepOrder: (dir: string) => join(dir, 'semdedup', 'keep_order.npy'),
  /** Step 4: the original's `indices` column: each keep-order position's place in the step-3 order of its cluster (int64, N). */
  keepIndex: (dir: string) => join(dir, 'semdedup', 'keep_index.npy'),
  /** Step 4: M per keep-order position (float64, N). */
  M: (dir: string) => join(dir, 'semdedup', 'M.npy'),
  /** Step 4: the earlier row that reached M, or -1 (int64, N). */
  Marg: (dir: string) => join(dir, 'semdedup', 'M_row.npy'),
  /** Step 4: partial results of an interrupted run (resumed, then removed). */
  parts: (dir: string) => join(dir, 'semdedup', 'parts'),
  /** Step 4/5: kept and removed counts per eps. */
  summary: (dir: string) => join(dir, 'semdedup', 'summary.json'),
  /** Step 5: kept row indices for one eps (int64). */
  keptRows: (dir: string, eps: number) => join(dir, 'semdedup', `kept_rows_eps${eps}.npy`),
};
