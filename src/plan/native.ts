// The addon's functions for planned runs (native/addon/plan.cpp).
import { loadNative, type NativeAddon, type NativeCancelToken, type NativeEmbeddings, type ProgressCallback } from '../native.js';

export interface PlanAddon extends NativeAddon {
  /** How the max-similarity kernel decomposes a cluster of n members at dimension d. */
  maxSimBlockLayout(n: number, d: number): { split: boolean; width: number };
  /** M and arg for positions [j0, j1) of one cluster (rows: its members in keep order). */
  maxSimilarityBlock(
    emb: NativeEmbeddings,
    rows: BigInt64Array,
    j0: number,
    j1: number,
    M: Float64Array,
    arg: BigInt64Array,
    opts: { thresholds: number[]; threads?: number; recheckMargin?: number },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<{ members: number; usefulFlops: number; computedFlops: number; rechecked: number }>;
}

export function planAddon(): PlanAddon {
  return loadNative() as PlanAddon;
}
