// Step 3 (the original's assign_and_sort_clusters; docs/algorithm.md): group rows by their nearest centroid
// and rank each cluster by distance to it. Optionally writes the original's
// sorted_clusters/cluster_{c}.npy files.
import { existsSync } from 'node:fs';
import { makeDir } from '../io/atomic.js';
import { join, resolve } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { sortedClusterArray, writeSortedCluster } from '../io/pyrepr.js';
import { type Ids } from '../io/ids.js';
import { outputs } from '../layout.js';
import { loadNative } from '../native/index.js';
import { embeddingsFiles, embeddingsInputs, type Embeddings } from '../embeddings.js';
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
  const stepParams = { simMetric, keepHard, spherical, algorithm: ALGORITHM_VERSION };
  const stepInputs: Record<string, string> = { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) };
  if (simMetric === 'cosine' && !spherical && opts.embeddings) Object.assign(stepInputs, embeddingsInputs(opts.embeddings));
  if (!opts.exportSortedClusters && stepIsCurrent(dir, 'sort', stepParams, stepInputs)) {
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

  // The distance that ranks a row (step 3 (docs/algorithm.md)), as float32 like the original's arrays.
  const key = new Float32Array(n);
  if (simMetric === 'l2') {
    key.set(dist);
  } else if (spherical) {
    for (let i = 0; i < n; i++) key[i] = Math.fround(1 - dist[i]!);
  } else {
    if (!opts.embeddings)
      throw new ConfigError('sim_metric cosine with non-spherical k-means needs the embeddings to compute cos(x, centroid)', { key: 'embeddings' });
    const emb = opts.embeddings;
    if (emb.n !== n) throw new InputError(`${emb.path}: ${emb.n} rows, but nearest_cent.npy has ${n}`, { file: emb.path });
    const cos = new Float32Array(n);
    const addon = loadNative();
    await runNative(opts, 'sort:cosine', ({ cancel }) => addon.cosineToCentroid({ emb: emb.native, centroids, k, nearest, out: cos, threads: opts.threads, cancel }));
    for (let i = 0; i < n; i++) key[i] = Math.fround(1 - cos[i]!);
  }

  const order = new BigInt64Array(n);
  const offsets = new BigInt64Array(k + 1);
  // The distance of each position, gathered by the (parallel) ranking itself.
  const distance = new Float32Array(n);
  try {
    await loadNative().rankClusters({ nearest, key, k, keepHard, order, offsets, sortedKey: distance, threads: opts.threads });
  } catch (e) {
    throw new InputError(`${outputs.nearest(dir)}: ${(e as Error).message}`, { file: outputs.nearest(dir) });
  }

  ensureOutputDir(outputs.ours(dir));
  writeNpy(outputs.order(dir), order);
  writeNpy(outputs.offsets(dir), offsets);
  writeNpy(outputs.sortKey(dir), distance);

  if (opts.exportSortedClusters) {
    const sdir = opts.sortedClustersDir ?? join(dir, 'sorted_clusters'); // the config's default when run from a config
    makeDir(sdir);
    const ids = opts.ids;
    for (let c = 0; c < k; c++) {
      const b = Number(offsets[c]);
      const e = Number(offsets[c + 1]);
      if (e === b) {
        // the original's np.save of an empty list: a 1-D float64 array of length 0
        writeNpy(join(sdir, `cluster_${c}.npy`), new Float64Array(0));
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
      writeSortedCluster(join(sdir, `cluster_${c}.npy`), arr);
      opts.onProgress?.({ stage: 'sort:export', done: c + 1, total: k });
    }
  }
  const seconds = (now() - t0) / 1000;
  // The export is noted (where, how many clusters) so that files of another k can be swept.
  const exported = opts.exportSortedClusters ? { dir: resolve(opts.sortedClustersDir ?? join(dir, 'sorted_clusters')), k } : undefined;
  recordStep(dir, 'sort', stepParams, stepInputs, { order: outputs.order(dir), offsets: outputs.offsets(dir), sortKey: outputs.sortKey(dir) }, { seconds, ...(exported ? { exported } : {}) });
  return { order, offsets, distance, k, seconds };
}
