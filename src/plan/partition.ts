// How the dedup stage splits its work: clusters in order, balanced by cost (n² · D per cluster),
// a cluster costlier than one task's share and large enough for the kernel to split it cut into
// row blocks at the kernel's tile bounds (so each block is computed exactly as the whole-cluster
// kernel computes it). Every dedup task computes the same partition from the cluster sizes.

export interface DedupItem {
  task: number;
  cluster: number;
  /** Positions [j0, j1) of the cluster in keep order; the whole cluster is [0, n). */
  j0: number;
  j1: number;
  /** The cluster's size. */
  n: number;
}

export type BlockLayoutFn = (n: number) => { split: boolean; width: number };

export function dedupItems(sizes: ArrayLike<number>, tasks: number, layout: BlockLayoutFn): DedupItem[] {
  let total = 0;
  for (let c = 0; c < sizes.length; c++) total += sizes[c]! * sizes[c]!;
  const share = total / tasks;
  const items: DedupItem[] = [];
  let cum = 0;
  const push = (cluster: number, j0: number, j1: number, n: number) => {
    const cost = j1 * j1 - j0 * j0;
    const task = share > 0 ? Math.min(tasks - 1, Math.floor((cum + cost / 2) / share)) : 0;
    items.push({ task, cluster, j0, j1, n });
    cum += cost;
  };
  for (let c = 0; c < sizes.length; c++) {
    const n = sizes[c]!;
    if (n === 0) continue;
    const cost = n * n;
    const lay = cost > share && share > 0 ? layout(n) : { split: false, width: n };
    if (!lay.split) {
      push(c, 0, n, n);
      continue;
    }
    // Blocks of about one share each: the cost of positions [0, j) grows as j².
    const blocks = Math.ceil(cost / share);
    const bounds = [0];
    for (let b = 1; b < blocks; b++) {
      const j = Math.round((n * Math.sqrt(b / blocks)) / lay.width) * lay.width;
      if (j > bounds[bounds.length - 1]! && j < n) bounds.push(j);
    }
    bounds.push(n);
    for (let b = 0; b + 1 < bounds.length; b++) push(c, bounds[b]!, bounds[b + 1]!, n);
  }
  return items;
}
