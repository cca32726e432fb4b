// Step 3 (the original's assign_and_sort_clusters; docs/algorithm.md): group rows by their nearest centroid
// and rank each cluster by distance to it. Optionally writes the original's
// sorted_clusters/cluster_{c}.npy files.
import { existsSync } from 'node:fs';
import { makeDir } from '../io/atomic.js';
import { resolve } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { sortedClusterArray, writeSortedCluster } from '../io/pyrepr.js';
import { type Ids } from '../io/ids.js';
import { outputs } from '../layout.js';
import { loadNative, type NativeEmbeddings } from '../native/index.js';
import { embeddingsFiles, embeddingsInputs, type Embeddings, type EmbeddingsLayout } from '../embeddings.js';
import { withDefaults, type ConfigFields } from '../config.js';
import {
  ALGORITHM_VERSION,
  ensureOutputDir,
  now,
  runNative,
  type CommonOptions } from './common.js';
import { recordStep, requireCommitted, requireSameInputs, stepIsCurrent } from '../manifest.js';

/** The options of step 3; the ranking parameters are the schema's (defaults: withDefaults). */
export interface SortOptions
  extends CommonOptions,
    ConfigFields<'simMetric' | 'keepHard' | 'spherical' | 'exportSortedClusters' | 'sortedClustersDir'> {
  outputDir: string;
  /** Needed for cosine with non-spherical k-means (cos to the centroid is recomputed). */
  embeddings?: Embeddings;
  /** Ids for the exported files (default: row numbers). */
  ids?: Ids;
}

export interface SortResult {
  /** Rows grouped by cluster 0..k-1, each ranked. */
  order: BigInt64Array;
  /** Cluster c is order[offsets[c] .. offsets[c+1]). */
  offsets: BigInt64Array;
  /** The distance to the centroid of each position. */
  distance: Float32Array;
  k: number;
  seconds: number;
}

/**
 * Step 3's ranking key of a row range (a planned run's `assign` stage, or all rows): the distance
 * to its centroid that ranks each row, as float32 like the original's arrays. `rows` (a mapping of
 * the same range) is needed for cosine with non-spherical k-means, where cos(x, centroid) is
 * recomputed.
 */
export async function rankKeys(
  nearest: BigInt64Array, dist: Float32Array,
  o: CommonOptions & { simMetric: 'cosine' | 'l2'; spherical: boolean; centroids: Float32Array; k: number; rows?: NativeEmbeddings }, stage = 'sort:cosine',
): Promise<Float32Array> {
  const n = nearest.length;
  const key = new Float32Array(n);
  if (o.simMetric === 'l2') {
    key.set(dist);
  } else if (o.spherical) {
    for (let i = 0; i < n; i++) key[i] = Math.fround(1 - dist[i]!);
  } else {
    if (!o.rows) throw new ConfigError('sim_metric cosine with non-spherical k-means needs the embeddings to compute cos(x, centroid)', { key: 'embeddings' });
    const rows = o.rows;
    const cos = new Float32Array(n);
    await runNative(o, stage, ({ cancel }) => loadNative().cosineToCentroid({ emb: rows, centroids: o.centroids, k: o.k, nearest, out: cos, threads: o.threads, cancel }));
    for (let i = 0; i < n; i++) key[i] = Math.fround(1 - cos[i]!);
  }
  return key;
}

/**
 * Step 3 for clusters [c0, c1) of k (a planned run's `group` stage, or all k clusters): their rows
 * (from every row's cluster and key) grouped and ranked. Rows are taken in ascending order, so the
 * stable ranking breaks ties by row whatever the range. `offsets` are relative to the range's first
 * position (c1 - c0 + 1 values).
 */
export async function rankClusterRange(
  nearest: BigInt64Array, key: Float32Array, k: number, c0: number, c1: number, keepHard: boolean, threads?: number,
): Promise<{ order: BigInt64Array; offsets: BigInt64Array; distance: Float32Array }> {
  const offsets = new BigInt64Array(c1 - c0 + 1);
  if (c0 === 0 && c1 === k) {
    // All clusters: every row ranked in place (a cluster id outside 0..k-1 is refused by the kernel).
    const order = new BigInt64Array(nearest.length);
    const distance = new Float32Array(nearest.length);
    await loadNative().rankClusters({ nearest, key, k, keepHard, order, offsets, sortedKey: distance, threads });
    return { order, offsets, distance };
  }
  const lo = BigInt(c0);
  const hi = BigInt(c1);
  let m = 0;
  for (let r = 0; r < nearest.length; r++) if (nearest[r]! >= lo && nearest[r]! < hi) m++;
  const rows = new BigInt64Array(m);
  const subNearest = new BigInt64Array(m);
  const subKey = new Float32Array(m);
  for (let r = 0, j = 0; r < nearest.length; r++) {
    const c = nearest[r]!;
    if (c >= lo && c < hi) {
      rows[j] = BigInt(r);
      subNearest[j] = c - lo;
      subKey[j] = key[r]!;
      j++;
    }
  }
  const subOrder = new BigInt64Array(m);
  const distance = new Float32Array(m);
  await loadNative().rankClusters({ nearest: subNearest, key: subKey, k: c1 - c0, keepHard, order: subOrder, offsets, sortedKey: distance, threads });
  const order = new BigInt64Array(m);
  for (let p = 0; p < m; p++) order[p] = rows[Number(subOrder[p]!)]!;
  return { order, offsets, distance };
}

/** What the `sort` record commits: the ranking's parameters and inputs. */
function sortRecord(dir: string, o: { simMetric: 'cosine' | 'l2'; keepHard: boolean; spherical: boolean }, emb: EmbeddingsLayout | undefined) {
  const inputs: Record<string, string> = { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) };
  if (o.simMetric === 'cosine' && !o.spherical && emb) Object.assign(inputs, embeddingsInputs(emb));
  return { params: { simMetric: o.simMetric, keepHard: o.keepHard, spherical: o.spherical, algorithm: ALGORITHM_VERSION }, inputs };
}

/** Writes step 3's files (the order, offsets and ranking distance of all k clusters). */
export function writeSortFiles(dir: string, r: { order: BigInt64Array; offsets: BigInt64Array; distance: Float32Array }): void {
  ensureOutputDir(outputs.ours(dir));
  writeNpy(outputs.order(dir), r.order);
  writeNpy(outputs.offsets(dir), r.offsets);
  writeNpy(outputs.sortKey(dir), r.distance);
}

/**
 * The original's sorted_clusters/cluster_{c}.npy files (export_sorted_clusters) from step 3's
 * order; returns what the `sort` record notes of them (so that files of another k can be swept).
 */
export function exportSortedClusters(
  sdir: string, r: { order: BigInt64Array; offsets: BigInt64Array; distance: Float32Array }, ids: Ids | undefined, onProgress?: CommonOptions['onProgress'],
): { dir: string; k: number } {
  const { order, offsets, distance } = r;
  const k = offsets.length - 1;
  makeDir(sdir);
  for (let c = 0; c < k; c++) {
    const b = Number(offsets[c]);
    const e = Number(offsets[c + 1]);
    if (e === b) {
      // the original's np.save of an empty list: a 1-D float64 array of length 0
      writeNpy(outputs.sortedCluster(sdir, c), new Float64Array(0));
      continue;
    }
    const rows: number[] = [];
    const idList: (string | Uint8Array)[] = [];
    for (let p = b; p < e; p++) {
      const r = Number(order[p]);
      rows.push(r);
      idList.push(ids ? (ids.strKind === 'S' ? ids.getBytes(r) : ids.get(r)) : String(r));
    }
    // pandas hands the original's sort Python floats: the float32 distance widened to float64
    const arr = sortedClusterArray(idList, rows, distance.subarray(b, e), c, {
      idKind: ids ? ids.strKind : 'U',
      distType: 'float64',
    });
    writeSortedCluster(outputs.sortedCluster(sdir, c), arr);
    onProgress?.({ stage: 'sort:export', done: c + 1, total: k });
  }
  return { dir: resolve(sdir), k };
}

/** Commits step 3 (its files written): the `sort` record, with the export when there was one. */
export function commitSort(
  dir: string, o: { simMetric: 'cosine' | 'l2'; keepHard: boolean; spherical: boolean }, emb: EmbeddingsLayout | undefined, stats: Record<string, unknown>,
): void {
  const { params, inputs } = sortRecord(dir, o, emb);
  recordStep(dir, 'sort', params, inputs, { order: outputs.order(dir), offsets: outputs.offsets(dir), sortKey: outputs.sortKey(dir) }, stats);
}

export async function assignAndSortClusters(options: SortOptions): Promise<SortResult> {
  const t0 = now();
  const opts = withDefaults(options);
  const dir = opts.outputDir;
  const { simMetric, keepHard, spherical } = opts;
  if (simMetric === 'l2' && spherical)
    throw new ConfigError('sim_metric l2 cannot be used with spherical k-means (Kmeans_with_cos_dist: True): spherical centroids rank by inner product', { key: 'sim_metric' });
  for (const p of [outputs.centroids(dir), outputs.nearest(dir), outputs.dist(dir)])
    if (!existsSync(p)) throw new InputError(`${p} not found: run the cluster step first (semdedup cluster)`, { file: p });
  // Only the cluster step's committed results are read; unchanged inputs and params: skipped.
  requireCommitted(dir, 'cluster', { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) });
  // The embeddings of a cosine re-ranking are the ones the cluster step assigned.
  if (simMetric === 'cosine' && !spherical && opts.embeddings) requireSameInputs(dir, 'cluster', 'embeddings', embeddingsFiles(opts.embeddings), 'embeddings');
  const rec = sortRecord(dir, opts, opts.embeddings);
  if (!opts.exportSortedClusters && stepIsCurrent(dir, 'sort', rec.params, rec.inputs)) {
    const order = readNpy(outputs.order(dir)).data as BigInt64Array;
    const offsets = readNpy(outputs.offsets(dir)).data as BigInt64Array;
    const distance = readNpy(outputs.sortKey(dir)).data as Float32Array;
    opts.log?.('sort: up to date, reused');
    return { order, offsets, distance, k: offsets.length - 1, seconds: (now() - t0) / 1000 };
  }
  const centroidsNpy = readNpy(outputs.centroids(dir));
  const nearestNpy = readNpy(outputs.nearest(dir));
  const distNpy = readNpy(outputs.dist(dir));
  const centroids = centroidsNpy.data as Float32Array;
  const k = centroidsNpy.header.shape[0]!;
  let nearest: BigInt64Array;
  if (nearestNpy.data instanceof BigInt64Array) nearest = nearestNpy.data;
  else if (nearestNpy.data instanceof Int32Array) nearest = BigInt64Array.from(nearestNpy.data, (v) => BigInt(v));
  else throw new InputError(`${outputs.nearest(dir)}: expected int64 cluster ids, found ${nearestNpy.header.descr}`, { file: outputs.nearest(dir) });
  if (!(distNpy.data instanceof Float32Array))
    throw new InputError(`${outputs.dist(dir)}: expected float32 distances, found ${distNpy.header.descr}`, { file: outputs.dist(dir) });
  const dist = distNpy.data;
  const n = nearest.length;
  if (dist.length !== n) throw new InputError(`${outputs.dist(dir)}: ${dist.length} values, but nearest_cent.npy has ${n}`, { file: outputs.dist(dir) });
  const emb = opts.embeddings;
  if (simMetric === 'cosine' && !spherical && emb && emb.n !== n) throw new InputError(`${emb.path}: ${emb.n} rows, but nearest_cent.npy has ${n}`, { file: emb.path });

  // The distance that ranks a row (step 3 (docs/algorithm.md)), then the ranking of all k clusters.
  const key = await rankKeys(nearest, dist, { ...opts, centroids, k, ...(emb ? { rows: emb.native } : {}) });
  let ranked: { order: BigInt64Array; offsets: BigInt64Array; distance: Float32Array };
  try {
    ranked = await rankClusterRange(nearest, key, k, 0, k, keepHard, opts.threads);
  } catch (e) {
    throw new InputError(`${outputs.nearest(dir)}: ${(e as Error).message}`, { file: outputs.nearest(dir) });
  }
  writeSortFiles(dir, ranked);
  // The export is noted (where, how many clusters) so that files of another k can be swept.
  const exported = opts.exportSortedClusters
    ? exportSortedClusters(opts.sortedClustersDir ?? outputs.sortedClusters(dir), ranked, opts.ids, opts.onProgress) // the config's default when run from a config
    : undefined;
  const seconds = (now() - t0) / 1000;
  commitSort(dir, opts, opts.embeddings, { seconds, ...(exported ? { exported } : {}) });
  return { ...ranked, k, seconds };
}
