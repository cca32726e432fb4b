// The in-memory call: embeddings as a typed array (or texts and a model handle) and ids in,
// kept ids and, per removed item, the earlier member it duplicates and their similarity out
// (SemHash's `selected` / `duplicates`). No file is left behind: the native engine maps files,
// so the rows are written once into a private temporary folder (mode 0700) that the steps work in,
// and the folder is removed when the call settles, however it settles.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveOptions, type RunOptions } from './config.js';
import { createEmbeddingsFile } from './embeddings.js';
import { ConfigError, InputError } from './errors.js';
import { runAll } from './pipeline.js';
import { isRemoved, thresholdOf } from './decision.js';
import { throwIfAborted, type CommonOptions } from './steps/common.js';
import type { EmbeddingModel } from './embed/model.js';

/**
 * A `Float16Array` (where the runtime has one), described by its shape so that these declarations
 * compile whatever `lib` the caller's TypeScript has.
 */
export interface Float16ArrayLike extends ArrayLike<number> {
  readonly BYTES_PER_ELEMENT: 2;
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly byteLength: number;
}

/**
 * Row-major N × D embeddings: `Float32Array`, `Float16Array`, or a `Uint16Array` of float16 bits
 * (the engine's own form of half floats, as `Embeddings.view()` gives them).
 */
export type EmbeddingsArray = Float32Array | Uint16Array | Float16ArrayLike;

/** The schema's options that make sense without files (the input and output keys are set here). */
export type InMemoryRunOptions = Omit<
  RunOptions,
  | 'embeddings' | 'embeddingsFormat' | 'embeddingsColumn' | 'embeddingsDtype' | 'datasetSize' | 'dim'
  | 'ids' | 'idsFormat' | 'idsColumn' | 'idsDtype' | 'rankBy' | 'outputDir' | 'sortedClustersDir'
  | 'exportSortedClusters' | 'reuseCentroids' | 'epsList' | 'threshold'
>;

/** The default eps of the in-memory call: 0.1, i.e. SemHash's default threshold 0.9. */
export const DEFAULT_IN_MEMORY_EPS = 0.1;

interface InMemoryCommon extends InMemoryRunOptions, Omit<CommonOptions, 'threads' | 'device' | 'gpuMemoryLimit'> {
  /** One id per row (unique strings); default: the row numbers as strings. */
  ids?: readonly string[];
  /** A member is removed when its similarity to an earlier member of its cluster is > 1 − eps (default 0.1). */
  eps?: number;
  /** Instead of eps: a cosine-similarity threshold (SemHash's); eps = 1 − threshold. */
  threshold?: number;
  /** Where the private working folder is made (default: the OS temporary folder); it is removed afterwards. */
  tmpDir?: string;
}

/** The in-memory call on embeddings. */
export interface InMemoryEmbeddingsOptions extends InMemoryCommon {
  embeddings: EmbeddingsArray;
  /** Values per row D; default: the array's length / the number of ids. */
  dim?: number;
}

/** The in-memory call on texts, embedded by a model handle (`loadModel(dir)`). */
export interface InMemoryTextsOptions extends InMemoryCommon {
  texts: readonly string[];
  model: EmbeddingModel;
}

export type InMemoryDedupOptions = InMemoryEmbeddingsOptions | InMemoryTextsOptions;

/** A removed item: the earlier member of its cluster (in keep order) that it duplicates. */
export interface RemovedItem {
  id: string;
  row: number;
  /** The id of the earlier member with the largest similarity (it may itself be removed). */
  duplicateOf: string;
  duplicateOfRow: number;
  /** Cosine similarity of the two rows (the engine's M, computed exactly in float64), > threshold. */
  similarity: number;
}

export interface InMemoryDedupResult {
  eps: number;
  /** 1 − eps (rounded to 15 digits): removed items have a similarity above it. */
  threshold: number;
  /** Rows N, dimension D and clusters k (the default from N when k was not given). */
  n: number;
  d: number;
  k: number;
  /** The kept ids, in input order. */
  kept: string[];
  /** The kept rows, in input order. */
  keptRows: number[];
  /** The removed items, in input order. */
  removed: RemovedItem[];
}

function isFloat16Array(a: unknown): a is Float16ArrayLike {
  const F16 = (globalThis as { Float16Array?: abstract new (...args: never[]) => unknown }).Float16Array;
  return F16 !== undefined && a instanceof F16;
}

function asHalfOrSingle(a: EmbeddingsArray): { dtype: 'float32' | 'float16'; data: Float32Array | Uint16Array } {
  if (a instanceof Float32Array) return { dtype: 'float32', data: a };
  if (a instanceof Uint16Array) return { dtype: 'float16', data: a };
  if (isFloat16Array(a)) return { dtype: 'float16', data: new Uint16Array(a.buffer, a.byteOffset, a.length) };
  throw new InputError('embeddings must be a Float32Array, a Float16Array or a Uint16Array of float16 bits', { key: 'embeddings' });
}

function checkIds(ids: readonly unknown[], n: number): void {
  if (ids.length !== n) throw new InputError(`ids: ${ids.length} ids for ${n} rows of embeddings; give one id per row`, { key: 'ids' });
  const seen = new Map<string, number>();
  ids.forEach((id, i) => {
    if (typeof id !== 'string' || id === '') throw new InputError(`ids[${i}] must be a non-empty string, got ${JSON.stringify(id)}`, { key: 'ids' });
    const prev = seen.get(id);
    if (prev !== undefined) throw new InputError(`ids[${i}] ${JSON.stringify(id)} repeats ids[${prev}]; ids must be unique`, { key: 'ids' });
    seen.set(id, i);
  });
}

function epsOf(o: InMemoryCommon): number {
  if (o.eps !== undefined && o.threshold !== undefined)
    throw new ConfigError(`give eps or threshold, not both (eps ${o.eps}, threshold ${o.threshold})`, { key: 'eps_list' });
  // The schema's checks (a number strictly between 0 and 1, threshold → eps).
  const c = resolveOptions(o.threshold !== undefined ? { threshold: o.threshold } : { epsList: [o.eps ?? DEFAULT_IN_MEMORY_EPS] });
  return c.epsList[0]!;
}

/**
 * Semantic deduplication in memory: clusters the rows (k-means), orders each cluster, and removes
 * every member whose similarity to an earlier member is > 1 − eps, as `runAll` does, with the same
 * options (k defaults from N) and results. Progress and cancellation as for the steps
 * (`onProgress`, `signal`: ERR_CANCELLED). Embeddings must be L2-normalised unless
 * `normalize: 'always'`.
 */
export async function dedup(opts: InMemoryDedupOptions): Promise<InMemoryDedupResult> {
  const eps = epsOf(opts);
  throwIfAborted(opts.signal);
  const { ids: givenIds, eps: _e, threshold: _t, tmpDir, onProgress, signal, log, ...rest } = opts as InMemoryCommon & Partial<InMemoryEmbeddingsOptions & InMemoryTextsOptions>;
  let array: EmbeddingsArray;
  let d: number;
  if ('texts' in opts && opts.texts !== undefined) {
    if (!opts.model) throw new ConfigError('texts need a model (loadModel(dir))', { key: 'model' });
    array = await opts.model.embed(opts.texts, signal ? { signal } : {});
    d = opts.model.dim;
  } else {
    const o = opts as InMemoryEmbeddingsOptions;
    if (!o.embeddings) throw new ConfigError('give embeddings (with dim or ids), or texts and a model', { key: 'embeddings' });
    array = o.embeddings;
    const rowsFromIds = givenIds && givenIds.length > 0 ? o.embeddings.length / givenIds.length : undefined;
    d = o.dim ?? rowsFromIds ?? NaN;
    if (!Number.isSafeInteger(d) || d < 1)
      throw new InputError(
        o.dim !== undefined ? `dim must be a positive integer, got ${o.dim}` : `cannot tell the dimension: give dim, or one id per row (${o.embeddings.length} values for ${givenIds?.length ?? 0} ids)`,
        { key: 'dim' },
      );
  }
  const { dtype, data } = asHalfOrSingle(array);
  if (data.length === 0 || data.length % d !== 0)
    throw new InputError(`embeddings: ${data.length} values are not rows of dim ${d}`, { key: 'embeddings' });
  const n = data.length / d;
  if (givenIds) checkIds(givenIds, n);
  const idOf = (row: number) => (givenIds ? givenIds[row]! : String(row));
  const { model: _m, texts: _x, embeddings: _y, dim: _d, ...runOptions } = rest;

  const work = mkdtempSync(join(tmpDir ?? tmpdir(), 'semdedup-'));
  try {
    const file = join(work, 'embeddings.npy');
    const emb = createEmbeddingsFile(file, n, d, { format: 'npy', dtype });
    try {
      emb.view().set(data);
    } finally {
      emb.close();
    }
    const r = await runAll(
      { ...runOptions, embeddings: file, outputDir: join(work, 'run'), epsList: [eps] },
      { ...(onProgress ? { onProgress } : {}), ...(signal ? { signal } : {}), ...(log ? { log } : {}) },
    );
    const { keepOrder, M, Mrow } = r.dedup;
    const gone = new Uint8Array(n);
    const removed: RemovedItem[] = [];
    for (let p = 0; p < keepOrder.length; p++) {
      if (!isRemoved(M[p]!, eps)) continue;
      const row = Number(keepOrder[p]!);
      const by = Number(Mrow[p]!);
      gone[row] = 1;
      removed.push({ id: idOf(row), row, duplicateOf: idOf(by), duplicateOfRow: by, similarity: M[p]! });
    }
    removed.sort((a, b) => a.row - b.row);
    const keptRows: number[] = [];
    for (let row = 0; row < n; row++) if (!gone[row]) keptRows.push(row);
    return { eps, threshold: Number(thresholdOf(eps).toPrecision(15)), n, d, k: r.cluster.k, kept: keptRows.map(idOf), keptRows, removed };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
