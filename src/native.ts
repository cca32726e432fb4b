// Loads the native addon: a prebuilt binary for this platform first (prebuilds/<platform>-<arch>/),
// then the local build (build/Release), else one error that says what was tried and how to build.
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

export interface KmeansNativeParams {
  k: number;
  niter: number;
  seed: number;
  spherical: boolean;
  maxPointsPerCentroid: number;
  minPointsPerCentroid: number;
  threads: number;
  device: 'cpu' | 'cuda';
  /** 'engine' (default): FAISS's algorithm on the engine's kernels, with pruning; 'faiss': faiss::Clustering. */
  impl?: 'engine' | 'faiss';
  prune?: boolean;
}

export interface MaxSimStats {
  members: number;
  clusters: number;
  usefulFlops: number;
  computedFlops: number;
  rechecked: number;
  device: string;
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

export interface NativeAddon {
  Embeddings: new (
    path: string,
    opts: { offset: number; n: number; d: number; dtype: 'float32' | 'float16'; writable: boolean },
  ) => NativeEmbeddings;
  CancelToken: new () => NativeCancelToken;
  trainKmeans?: (
    emb: NativeEmbeddings,
    p: KmeansNativeParams,
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ) => Promise<{ centroids: Float32Array; objective: number[]; nTrain: number; underMinPoints: boolean; searchedRows: number; prunedRows: number }>;
  assignNearest?: (
    emb: NativeEmbeddings,
    centroids: Float32Array,
    k: number,
    innerProduct: boolean,
    nearest: BigInt64Array,
    dist: Float32Array,
    opts: { threads: number; device: 'cpu' | 'cuda'; impl?: 'engine' | 'faiss' },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ) => Promise<void>;
  cosineToCentroid?: (
    emb: NativeEmbeddings,
    centroids: Float32Array,
    k: number,
    nearest: BigInt64Array,
    out: Float32Array,
    opts: { threads: number },
    cancel?: NativeCancelToken,
  ) => Promise<void>;
  rankClusters(
    nearest: BigInt64Array,
    key: Float32Array,
    k: number,
    keepHard: boolean,
    order: BigInt64Array,
    offsets: BigInt64Array,
  ): Promise<void>;
  maxSimilarity(
    emb: NativeEmbeddings,
    order: BigInt64Array,
    offsets: BigInt64Array,
    M: Float64Array,
    arg: BigInt64Array,
    opts: { thresholds: number[]; threads: number; device: 'cpu' | 'cuda'; recheckMargin?: number },
    onProgress?: ProgressCallback,
    cancel?: NativeCancelToken,
  ): Promise<MaxSimStats>;
  scanEmbeddings(emb: NativeEmbeddings, normTol: number, opts: { threads: number }, cancel?: NativeCancelToken): Promise<ScanStats>;
  measureSgemm(n: number, repeats: number, threads?: number): Promise<number>;
  info(): NativeInfo;
  /** flock(fd, LOCK_EX | LOCK_NB): 0 when held, else the errno. */
  tryLockFd(fd: number): number;
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

export function candidatePaths(): string[] {
  const tag = `${process.platform}-${process.arch}`;
  const list: string[] = [];
  if (process.env.SEMDEDUP_NATIVE_PATH) list.push(resolve(process.env.SEMDEDUP_NATIVE_PATH));
  list.push(join(packageRoot, 'prebuilds', tag, 'semdedup.node'));
  list.push(join(packageRoot, 'build', 'Release', 'semdedup.node'));
  return list;
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
      return cached;
    } catch (e) {
      tried.push(`${p} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new SemDedupError(
    'ERR_NATIVE',
    `the semdedup native addon could not be loaded. Tried:\n  ${tried.join('\n  ')}\n` +
      `Build it from source with \`npm run build:native\` in ${packageRoot} ` +
      `(needs cmake >= 3.18, a C++17 compiler and FAISS with OpenBLAS; on Debian/Ubuntu: ` +
      `apt-get install cmake g++ libfaiss-dev libopenblas-dev).`,
  );
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
