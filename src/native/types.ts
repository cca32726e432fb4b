// The addon's TypeScript face: every function takes one options object (native/addon/options.hpp
// reads it), heavy calls return promises, and every error is a SemDedupError thrown by the addon
// itself (native/addon/errors.hpp), with a code from native/core/semdedup/errors.def.
import type { SemDedupError } from '../errors.js';

export interface NativeEmbeddings {
  readonly n: number;
  readonly d: number;
  readonly dtype: 'float32' | 'float16';
  readonly path: string;
  view(): (Float32Array | Uint16Array) & { copied?: boolean };
  rows(begin: number, end: number): Float32Array;
  sync(): void;
  close(): void;
}

export interface NativeCancelToken {
  cancel(): void;
}

export type ProgressCallback = (done: number, total: number) => void;

/** Where heavy jobs may run, as asked for (auto: the GPU when it can). */
export type DeviceChoice = 'auto' | 'cpu' | 'cuda';

/**
 * A device choice resolved once by the engine facade (native/engine): `device` is where its jobs
 * run; `note` says why not the GPU under auto. Creating one for 'cuda' without a usable GPU throws
 * ERR_BACKEND with the reason. Heavy calls take it as their `engine` option.
 */
export interface NativeEngine {
  readonly device: 'cpu' | 'cuda';
  readonly requested: DeviceChoice;
  readonly note: string;
}

/** Which backend ran a job, and why not the GPU when the device was auto (else ''). */
export interface Ran {
  backend: 'cpu' | 'cuda';
  backendNote: string;
}

/** What every job may take: worker threads, progress, cancellation. */
export interface JobOptions {
  threads?: number;
  onProgress?: ProgressCallback;
  cancel?: NativeCancelToken;
}

/** k-means parameters; an absent field keeps the C++ default (semdedup::KMeansParams). */
export interface KmeansNativeParams {
  k: number;
  niter?: number;
  seed?: number;
  spherical?: boolean;
  maxPointsPerCentroid?: number;
  minPointsPerCentroid?: number;
  threads?: number;
  /** 'engine' (default): FAISS's algorithm on the engine's kernels, with pruning; 'faiss': faiss::Clustering. */
  impl?: 'engine' | 'faiss';
  prune?: boolean;
  /** Device bytes the GPU backend may use (0: 85% of the free memory). */
  gpuMemoryLimit?: number;
}

/** The max-similarity options: thresholds are 1 − eps (src/decision.ts), the re-check is in float64 near them. */
export interface MaxSimOptions extends JobOptions {
  thresholds?: number[];
  recheckMargin?: number;
}

export interface MaxSimStats extends Ran {
  members: number;
  clusters: number;
  usefulFlops: number;
  computedFlops: number;
  /** Members the float32 filter did not decide: their candidates re-scored in float64. */
  rechecked: number;
  /** Of those, members re-scanned over all their earlier members in float64. */
  rescanned: number;
  /** The filter of whole-cluster items on the CPU (split clusters and the GPU use float32 tiles). */
  filter: CpuFilter;
  /** Members the integer filter left with several candidates, checked by their float32 products. */
  filterChecked: number;
  /** Exact copies of an earlier member decided without the kernel. */
  copies: number;
  /** How far M may lie from its float64 value: none from `exactAtOrAbove` on, at most `boundBelow` below it. */
  mPrecision: MPrecision;
}

/** The filter of the CPU's distance passes (SEMDEDUP_ISA; qfilter.hpp). */
export type CpuFilter = 'fp32' | 'avx2-int8';

/**
 * The precision of the stored M: every M ≥ exactAtOrAbove is the float64 value (within the 1e-5
 * contract); a smaller M lies within boundBelow of it (0: exact there too).
 */
export interface MPrecision {
  exactAtOrAbove: number;
  boundBelow: number;
}

export interface ScanStats {
  firstNonfinite: number;
  firstZero: number;
  firstUnnormalized: number;
  nonfiniteRows: number;
  zeroRows: number;
  unnormalizedRows: number;
  minNorm: number;
  maxNorm: number;
}

export interface NativeInfo {
  version: string;
  faiss: string;
  blasCore: string;
  blasThreads: number;
  hardwareThreads: number;
  kmeans: string;
  /** The CPU distance passes' filter: 'avx2-int8' or 'fp32' (SEMDEDUP_ISA). */
  cpuFilter?: string;
  cuda: {
    compiled: boolean;
    available: boolean;
    reason: string;
    name?: string;
    computeCapability?: string;
    totalMemory?: number;
    freeMemory?: number;
    multiprocessors?: number;
    driverVersion?: number;
    runtimeVersion?: number;
  };
}

/** A set of ids in the form the native id writer reads (row numbers, fixed-width bytes or UTF-32, or a blob). */
export type NativeIds =
  | { kind: 'rows'; count: number }
  | { kind: 'bytes' | 'utf32'; data: Uint8Array; width: number; count: number }
  | { kind: 'blob'; data: Uint8Array; offsets: BigInt64Array; count: number };

type Dtype = 'float32' | 'float16';

export interface NativeAddon {
  Embeddings: {
    new (opts: { path: string; offset: number; n: number; d: number; dtype: Dtype; writable: boolean }): NativeEmbeddings;
    /** Shards read as one dataset in order (read-only, each mapped). */
    new (opts: { shards: { path: string; offset: number; n: number }[]; d: number; dtype: Dtype }): NativeEmbeddings;
  };
  CancelToken: new () => NativeCancelToken;
  Engine: new (opts: { device?: DeviceChoice }) => NativeEngine;
  /** The class of every error the addon throws (src/native/loader.ts registers SemDedupError once). */
  setErrorClass(opts: { errorClass: typeof SemDedupError }): void;
  trainKmeans(
    opts: KmeansNativeParams & JobOptions & { emb: NativeEmbeddings; engine?: NativeEngine; /** Return the training rows' assignment to the final centroids. */ keepAssignment?: boolean },
  ): Promise<Ran & {
    centroids: Float32Array; objective: number[]; iterations: number; nTrain: number; underMinPoints: boolean; searchedRows: number; prunedRows: number; rescoredRows: number;
    /** Searched rows that scored only the centroid groups their bounds left open; centroid scores computed in all (k per full search). */
    partialRows: number; searchedColumns: number;
    /** The filter of the searches, and the searched rows it left with several candidates (all iterations). */
    filter: CpuFilter; filterCheckedRows: number;
    /** With keepAssignment: the training rows, their exact nearest final centroid and dist_to_cent. */
    assigned?: { rows: BigInt64Array; nearest: BigInt64Array; dist: Float32Array };
  }>;
  assignNearest(
    opts: JobOptions & {
      emb: NativeEmbeddings;
      centroids: Float32Array;
      k: number;
      innerProduct: boolean;
      nearest: BigInt64Array;
      dist: Float32Array;
      /** Rows (1) whose nearest and dist already hold their values: not searched. */
      skip?: Uint8Array;
      engine?: NativeEngine;
      impl?: 'engine' | 'faiss';
    },
  ): Promise<Ran & { rescoredRows: number; filter: CpuFilter; filterCheckedRows: number }>;
  cosineToCentroid(
    opts: JobOptions & { emb: NativeEmbeddings; centroids: Float32Array; k: number; nearest: BigInt64Array; out: Float32Array },
  ): Promise<void>;
  rankClusters(
    opts: JobOptions & {
      nearest: BigInt64Array;
      key: Float32Array;
      k: number;
      keepHard: boolean;
      order: BigInt64Array;
      offsets: BigInt64Array;
      /** key[order[p]] for every position p (the ranked distances), when given. */
      sortedKey?: Float32Array;
    },
  ): Promise<void>;
  /** Step 5: the kept and removed rows (keep order) of every threshold (1 − eps), in one pass. */
  splitKept(opts: JobOptions & { keepOrder: BigInt64Array; M: Float64Array; thresholds: number[] }): Promise<{ kept: BigInt64Array[]; removed: BigInt64Array[] }>;
  /** Item offsets of a '\n'-separated blob of ids. */
  blobOffsets(opts: { blob: Uint8Array }): Promise<BigInt64Array>;
  /** Writes the ids of `rows` joined by '\n' to the open file descriptor fd. */
  writeIdsText(opts: JobOptions & { fd: number; ids: NativeIds; rows: BigInt64Array }): Promise<void>;
  /** The filter the CPU's whole-cluster max similarity uses at dimension d (SEMDEDUP_ISA read now). */
  cpuFilter(opts: { d: number }): CpuFilter;
  /** How the max-similarity kernel decomposes a cluster of n members at dimension d. */
  maxSimLayout(opts: { n: number; d: number }): { split: boolean; width: number };
  /** M and arg for positions [j0, j1) of one cluster (rows: its members in keep order). */
  maxSimilarityBlock(
    opts: MaxSimOptions & { emb: NativeEmbeddings; rows: BigInt64Array; j0: number; j1: number; M: Float64Array; arg: BigInt64Array },
  ): Promise<Omit<MaxSimStats, keyof Ran>>;
  maxSimilarity(
    opts: MaxSimOptions & {
      emb: NativeEmbeddings;
      order: BigInt64Array;
      offsets: BigInt64Array;
      M: Float64Array;
      arg: BigInt64Array;
      engine?: NativeEngine;
      gpuMemoryLimit?: number;
    },
  ): Promise<MaxSimStats>;
  scanEmbeddings(opts: JobOptions & { emb: NativeEmbeddings; normTol: number }): Promise<ScanStats>;
  normalizeRows(opts: JobOptions & { emb: NativeEmbeddings; out: NativeEmbeddings }): Promise<void>;
  keepOrder(
    opts: JobOptions & {
      order: BigInt64Array;
      offsets: BigInt64Array;
      which: 'hard' | 'easy' | 'random';
      seed: number;
      keepOrder: BigInt64Array;
      keepIndex: BigInt64Array;
    },
  ): Promise<void>;
  measureSgemm(opts: { n: number; repeats: number; threads?: number }): Promise<number>;
  /** The integer filter's rate (GOP/s, quantisation included) as the assignment runs it; 0 without one. */
  measureFilter(opts: { repeats: number; threads?: number }): Promise<number>;
  /** The float64 re-check's default margin at dimension d. */
  recheckMargin(opts: { d: number }): number;
  recheckThresholds(
    opts: MaxSimOptions & { emb: NativeEmbeddings; order: BigInt64Array; offsets: BigInt64Array; M: Float64Array; arg: BigInt64Array },
  ): Promise<{ rechecked: number }>;
  maxSimilarityToReference(
    opts: MaxSimOptions & {
      emb: NativeEmbeddings;
      xRows: BigInt64Array;
      xOffsets: BigInt64Array;
      ref: NativeEmbeddings;
      rRows: BigInt64Array;
      rOffsets: BigInt64Array;
      best: Float64Array;
      bestRef: BigInt64Array;
    },
  ): Promise<{ rows: number; referenceRows: number; computedFlops: number; rechecked: number }>;
  exactDuplicates(
    opts: JobOptions & { emb: NativeEmbeddings; order: BigInt64Array; firstOf: BigInt64Array },
  ): Promise<{ rows: number; groups: number; copies: number }>;
  info(): NativeInfo;
  /** flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB): 0 when held, else the errno. */
  tryLockFd(opts: { fd: number; shared?: boolean }): number;
}
