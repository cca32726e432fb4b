// Loads the native addon: the prebuilt binary of the platform package first (the optional
// dependency semdedup-<platform>-<arch>[-gnu|-musl]), then the local build (build/Release, made
// by the install hook or `npm run build:native`), else one error that says what was tried and how
// to build. SEMDEDUP_NATIVE_PATH names one addon file to load instead (and only that one).
// Before loading, it points OpenBLAS at the right kernel for this CPU (see blasCoreFor).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SemDedupError } from './errors.js';

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

/** Where a heavy job may run: the native engine facade decides (auto: the GPU when it can). */
export type DeviceChoice = 'auto' | 'cpu' | 'cuda';

/** Which backend ran a job, and why not the GPU when the device was auto (else ''). */
export interface Ran {
  backend: 'cpu' | 'cuda';
  backendNote: string;
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
  device?: DeviceChoice;
  /** 'engine' (default): FAISS's algorithm on the engine's kernels, with pruning; 'faiss': faiss::Clustering. */
  impl?: 'engine' | 'faiss';
  prune?: boolean;
  /** Device bytes the GPU backend may use (0: 85% of the free memory). */
  gpuMemoryLimit?: number;
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

export interface NativeAddon {
  Embeddings: {
    new (path: string, opts: { offset: number; n: number; d: number; dtype: 'float32' | 'float16'; writable: boolean }): NativeEmbeddings;
    /** Shards read as one dataset in order (read-only, each mapped). */
    new (shards: { path: string; offset: number; n: number }[], opts: { d: number; dtype: 'float32' | 'float16' }): NativeEmbeddings;
  };
  CancelToken: new () => NativeCancelToken;
  trainKmeans(
    emb: NativeEmbeddings,
    p: KmeansNativeParams,
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<Ran & { centroids: Float32Array; objective: number[]; iterations: number; nTrain: number; underMinPoints: boolean; searchedRows: number; prunedRows: number; rescoredRows: number }>;
  assignNearest(
    emb: NativeEmbeddings,
    centroids: Float32Array,
    k: number,
    innerProduct: boolean,
    nearest: BigInt64Array,
    dist: Float32Array,
    opts: { threads?: number; device?: DeviceChoice; impl?: 'engine' | 'faiss' },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<Ran & { rescoredRows: number }>;
  cosineToCentroid(
    emb: NativeEmbeddings,
    centroids: Float32Array,
    k: number,
    nearest: BigInt64Array,
    out: Float32Array,
    opts: { threads?: number },
    cancel?: NativeCancelToken,
  ): Promise<void>;
  rankClusters(
    nearest: BigInt64Array,
    key: Float32Array,
    k: number,
    keepHard: boolean,
    order: BigInt64Array,
    offsets: BigInt64Array,
    /** key[order[p]] for every position p (the ranked distances), when given. */
    sortedKey?: Float32Array,
    threads?: number,
  ): Promise<void>;
  /** Step 5: the kept and removed rows (keep order) of every threshold (1 - eps), in one pass. */
  splitKept(keepOrder: BigInt64Array, M: Float64Array, thresholds: number[], opts: { threads?: number }, cancel?: NativeCancelToken):
    Promise<{ kept: BigInt64Array[]; removed: BigInt64Array[] }>;
  /** Item offsets of a '\n'-separated blob of ids. */
  blobOffsets(blob: Uint8Array): Promise<BigInt64Array>;
  /** Writes the ids of `rows` joined by '\n' to the open file descriptor fd. */
  writeIdsText(fd: number, ids: NativeIds, rows: BigInt64Array, opts: { threads?: number }, onProgress?: ProgressCallback,
    cancel?: NativeCancelToken): Promise<void>;
  /** How the max-similarity kernel decomposes a cluster of n members at dimension d. */
  maxSimLayout(n: number, d: number): { split: boolean; width: number };
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
  ): Promise<{ members: number; clusters: number; usefulFlops: number; computedFlops: number; rechecked: number; rescanned: number }>;
  maxSimilarity(
    emb: NativeEmbeddings,
    order: BigInt64Array,
    offsets: BigInt64Array,
    M: Float64Array,
    arg: BigInt64Array,
    opts: { thresholds: number[]; threads?: number; device?: DeviceChoice; recheckMargin?: number; gpuMemoryLimit?: number },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<MaxSimStats>;
  scanEmbeddings(emb: NativeEmbeddings, normTol: number, opts: { threads?: number }, cancel?: NativeCancelToken): Promise<ScanStats>;
  normalizeRows(emb: NativeEmbeddings, out: NativeEmbeddings, opts: { threads?: number }, onProgress?: ProgressCallback, cancel?: NativeCancelToken): Promise<void>;
  keepOrder(
    order: BigInt64Array,
    offsets: BigInt64Array,
    which: 'hard' | 'easy' | 'random',
    seed: number,
    keepOrder: BigInt64Array,
    keepIndex: BigInt64Array,
    opts: { threads?: number },
  ): Promise<void>;
  measureSgemm(n: number, repeats: number, threads?: number): Promise<number>;
  /** The float64 re-check's default margin at dimension d. */
  recheckMargin(d: number): number;
  recheckThresholds(
    emb: NativeEmbeddings,
    order: BigInt64Array,
    offsets: BigInt64Array,
    M: Float64Array,
    arg: BigInt64Array,
    opts: { thresholds: number[]; threads: number; recheckMargin?: number },
    cancel?: NativeCancelToken,
  ): Promise<{ rechecked: number }>;
  maxSimilarityToReference(
    emb: NativeEmbeddings,
    xRows: BigInt64Array,
    xOffsets: BigInt64Array,
    ref: NativeEmbeddings,
    rRows: BigInt64Array,
    rOffsets: BigInt64Array,
    best: Float64Array,
    bestRef: BigInt64Array,
    opts: { thresholds: number[]; threads: number; recheckMargin?: number },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<{ rows: number; referenceRows: number; computedFlops: number; rechecked: number }>;
  exactDuplicates(
    emb: NativeEmbeddings,
    order: BigInt64Array,
    firstOf: BigInt64Array,
    opts: { threads: number },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<{ rows: number; groups: number; copies: number }>;
  info(): NativeInfo;
  /** flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB): 0 when held, else the errno. */
  tryLockFd(fd: number, shared?: boolean): number;
}

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere. */
export function cpuFlags(): Set<string> {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1]!.trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/**
 * The OpenBLAS kernel to use on this CPU. OpenBLAS 0.3.21 does not know the newest CPUs
 * (e.g. Xeons with AMX) and falls back to its generic "Prescott" kernel, about 4x slower for
 * sgemm. We name the best kernel it has for the instruction set we see.
 */
export function blasCoreFor(flags: Set<string>): string | undefined {
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq'))
    return flags.has('avx512_bf16') ? 'Cooperlake' : 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

let cached: NativeAddon | undefined;
/** OPENBLAS_CORETYPE as the user's environment had it, before the loader chose one. */
export const userOpenblasCoretype: string | undefined = process.env.OPENBLAS_CORETYPE;

/** The environment as the user gave it (for child processes such as benchmark peers). */
export function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (userOpenblasCoretype === undefined) delete env.OPENBLAS_CORETYPE;
  else env.OPENBLAS_CORETYPE = userOpenblasCoretype;
  return env;
}
let blasNote = '';

/** Why the BLAS kernel is what it is (for `semdedup info`). */
export function blasSelection(): string {
  return blasNote;
}

/** The platform package's name here, e.g. semdedup-linux-x64-gnu. */
export function platformPackage(): string {
  let libc = '';
  if (process.platform === 'linux') {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    libc = report?.header?.glibcVersionRuntime ? '-gnu' : '-musl';
  }
  return `semdedup-${process.platform}-${process.arch}${libc}`;
}

/** The addon files the loader tries, in order: SEMDEDUP_NATIVE_PATH alone when set. */
export function candidatePaths(): string[] {
  if (process.env.SEMDEDUP_NATIVE_PATH) return [resolve(process.env.SEMDEDUP_NATIVE_PATH)];
  const list: string[] = [];
  const require = createRequire(import.meta.url);
  const pkg = platformPackage();
  try {
    list.push(require.resolve(`${pkg}/semdedup.node`, { paths: [packageRoot] }));
  } catch {
    list.push(join(packageRoot, 'node_modules', pkg, 'semdedup.node')); // not installed: reported as not found
  }
  list.push(join(packageRoot, 'build', 'Release', 'semdedup.node'));
  return list;
}

let loadedPath = '';
/** The addon file in use (for `semdedup info`); empty before the first loadNative(). */
export function nativePath(): string {
  return loadedPath;
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (process.env.OPENBLAS_CORETYPE === undefined) {
    const core = blasCoreFor(cpuFlags());
    if (core) {
      process.env.OPENBLAS_CORETYPE = core; // read by OpenBLAS when the addon loads it
      blasNote = `OPENBLAS_CORETYPE=${core} chosen from the CPU flags`;
    } else {
      blasNote = 'OpenBLAS detects the CPU itself';
    }
  } else {
    blasNote = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} set by the environment`;
  }
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const p of candidatePaths()) {
    if (!existsSync(p)) {
      tried.push(`${p} (not found)`);
      continue;
    }
    try {
      cached = require(p) as NativeAddon;
      loadedPath = p;
      return cached;
    } catch (e) {
      tried.push(`${p} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new SemDedupError(
    'ERR_NATIVE',
    `the semdedup native addon could not be loaded. Tried:\n  ${tried.join('\n  ')}\n` +
      (process.env.SEMDEDUP_NATIVE_PATH
        ? 'SEMDEDUP_NATIVE_PATH names the only file tried; unset it to use the installed addon.'
        : `No prebuilt addon (package ${platformPackage()}) is installed for this platform. Build it from source ` +
          `with \`npm rebuild semdedup\` (in a checkout: \`npm run build:native\` in ${packageRoot}); ` +
          `that needs a C++17 compiler, cmake >= 3.19 for the full build, FAISS and OpenBLAS ` +
          `(Debian/Ubuntu: apt-get install g++ make cmake libfaiss-dev libopenblas-dev).`),
  );
}

let cachedInfo: NativeInfo | undefined;
/** The engine facts (versions, BLAS kernel, GPU), read from the addon once per process. */
export function nativeInfo(): NativeInfo {
  cachedInfo ??= loadNative().info();
  return cachedInfo;
}

/** Turns an error from the addon (with a native `code`) into a SemDedupError. */
export function nativeError(e: unknown, context: string): SemDedupError {
  if (e instanceof SemDedupError) return e;
  const err = e as Error & { code?: string };
  const code = err?.code;
  const msg = `${context}: ${err?.message ?? String(e)}`;
  if (code === 'ERR_CANCELLED') return new SemDedupError('ERR_CANCELLED', msg, { cause: e });
  if (code === 'ERR_IO' || code === 'ERR_FORMAT') return new SemDedupError('ERR_INPUT', msg, { cause: e });
  if (code === 'ERR_NUMERIC') return new SemDedupError('ERR_NUMERIC', msg, { cause: e });
  if (code === 'ERR_BACKEND') return new SemDedupError('ERR_BACKEND', msg, { cause: e });
  if (code === 'ERR_INVALID_ARGUMENT') return new SemDedupError('ERR_INPUT', msg, { cause: e });
  return new SemDedupError('ERR_NATIVE', msg, { cause: e });
}
