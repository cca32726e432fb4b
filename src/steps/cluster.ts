// Step 2 (the original's compute_centroids; docs/algorithm.md): k-means with FAISS's sampling and
// initialisation whose every assignment is the exact nearest centroid, then the exact nearest
// centroid of every row: the same bytes on every machine, thread count and device. Existing centroids in the output folder are reused, as
// the original resumes. The native engine facade runs both on the GPU or the CPU and says which.
import { existsSync } from 'node:fs';
import { InputError, NumericError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { engineFor, loadNative, type CpuFilter, type NativeEmbeddings } from '../native/index.js';
import { validateK } from '../decision.js';
import { embeddingsInputs, type Embeddings, type EmbeddingsLayout } from '../embeddings.js';
import { withDefaults, type ConfigFields } from '../config.js';
import { ALGORITHM_VERSION, ensureOutputDir, noteBackend, now, runNative, type CommonOptions } from './common.js';
import { recordStep, stamp, stepIsCurrent } from '../manifest.js';

/** The options of step 2; the k-means parameters are the schema's (defaults: withDefaults). */
export interface ClusterOptions
  extends CommonOptions,
    ConfigFields<'niter' | 'seed' | 'spherical' | 'maxPointsPerCentroid' | 'minPointsPerCentroid' | 'centroids' | 'reuseCentroids' | 'kmeansImpl' | 'kmeansPrune'> {
  /** The checked embeddings (prepareEmbeddings). */
  embeddings: Embeddings;
  /** The output folder (`save_folder`). */
  outputDir: string;
  /** Number of clusters (`ncentroids`). */
  k: number;
}

export interface ClusterResult {
  centroids: Float32Array;
  nearest: BigInt64Array;
  dist: Float32Array;
  k: number;
  d: number;
  /** Where the centroids came from. */
  centroidsFrom: 'trained' | 'reused' | 'given';
  /** True when nearest/dist were up to date and not recomputed. */
  assignmentReused: boolean;
  objective: number[];
  /** Iterations run (fewer than niter when an iteration changed no assignment); 0 when not trained. */
  iterations: number;
  /** Training rows fully searched and skipped by the bounds, over all iterations. */
  searchedRows: number;
  prunedRows: number;
  /** Searched rows that scored only the centroid groups their bounds left open, and the centroid scores computed in all (k per full search). */
  partialRows: number;
  searchedColumns: number;
  /** Rows the float32 pass left undecided and re-scored in float64: in training (all iterations), in the assignment. */
  rescoredRows: { train: number; assign: number };
  /** The filter of training's searches (absent when not trained) and of the assignment (absent when reused). */
  filter: { train?: CpuFilter; assign?: CpuFilter };
  /** Rows the integer filter left with several candidates, checked by their float32 products: in training, in the assignment. */
  filterCheckedRows: { train: number; assign: number };
  seconds: { train: number; assign: number };
  /** The backends that ran training (absent when not trained) and the assignment (absent when reused). */
  backend: { train?: 'cpu' | 'cuda'; assign?: 'cpu' | 'cuda' };
}

function loadCentroids(path: string, k: number, d: number, what: string): Float32Array {
  const { header, data } = readNpy(path);
  if (!(data instanceof Float32Array) || header.shape.length !== 2)
    throw new InputError(`${path}: ${what} must be a 2-D float32 .npy (k, D), found ${header.descr} shape (${header.shape.join(', ')})`, { file: path });
  if (header.shape[0] !== k || header.shape[1] !== d)
    throw new InputError(`${path}: ${what} have shape (${header.shape.join(', ')}), expected (k=${k}, D=${d})`, { file: path, key: 'k' });
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new NumericError(`${path}: ${what} hold ${data[bad]} (centroid ${Math.floor(bad / d)}, value ${bad % d}); centroids must be finite`, { file: path });
  return data;
}

/** Step 2's training: where the centroids came from, and what training reported (when trained). */
export interface TrainResult extends Pick<ClusterResult, 'centroids' | 'centroidsFrom' | 'objective' | 'iterations' | 'searchedRows' | 'prunedRows' | 'partialRows' | 'searchedColumns'> {
  /** Rows the float32 pass left undecided and re-scored in float64, over all iterations. */
  rescoredRows: number;
  /** The filter of the searches (absent when not trained), and the rows it left with several candidates. */
  filter?: CpuFilter;
  filterCheckedRows: number;
  /** The backend that trained (absent when not trained). */
  backend?: 'cpu' | 'cuda';
  seconds: number;
  /** With keepAssignment (when trained): the training rows' exact assignment to these centroids, for assignRows. */
  assigned?: Assigned;
}

/** Rows already assigned to the final centroids (by training): their row numbers, nearest centroid and dist_to_cent. */
export interface Assigned { rows: BigInt64Array; nearest: BigInt64Array; dist: Float32Array }

/** The k-means parameters that decide the centroids (recorded with them). */
function kmeansParams(opts: ReturnType<typeof withDefaults<ClusterOptions>>) {
  return {
    k: opts.k, niter: opts.niter, seed: opts.seed, spherical: opts.spherical,
    maxPointsPerCentroid: opts.maxPointsPerCentroid, minPointsPerCentroid: opts.minPointsPerCentroid,
  };
}

/**
 * Step 2's centroids (a planned run's `train` stage): the given ones, the committed ones when
 * reusable, else k-means on the seeded sample; committed as the `train` record with what they came
 * from (the given file, or the embeddings and the k-means parameters), reused only when that is
 * unchanged.
 */
export async function trainCentroids(options: ClusterOptions, extra: { keepAssignment?: boolean } = {}): Promise<TrainResult> {
  const opts = withDefaults(options);
  const log = opts.log ?? (() => {});
  const emb = opts.embeddings;
  const { k, threads, device, spherical, kmeansImpl: impl } = opts;
  validateK(k, { n: emb.n, file: emb.path });
  const given = opts.centroids ? loadCentroids(opts.centroids, k, emb.d, 'the given centroids') : undefined;
  ensureOutputDir(opts.outputDir);
  const params = kmeansParams(opts);
  const centroidsPath = outputs.centroids(opts.outputDir);
  const t0 = now();
  const trainParams = given ? { given: stamp(opts.centroids!), k, d: emb.d, algorithm: ALGORITHM_VERSION } : { ...params, impl, d: emb.d, algorithm: ALGORITHM_VERSION };
  const trainInputs: Record<string, string> = given ? {} : embeddingsInputs(emb);
  const committed = existsSync(centroidsPath) && stepIsCurrent(opts.outputDir, 'train', trainParams, trainInputs);
  const none = { objective: [], iterations: 0, searchedRows: 0, prunedRows: 0, partialRows: 0, searchedColumns: 0, rescoredRows: 0, filterCheckedRows: 0 };
  if (given) {
    if (!committed) {
      writeNpy(centroidsPath, given, { shape: [k, emb.d] });
      recordStep(opts.outputDir, 'train', trainParams, trainInputs, { centroids: centroidsPath });
    }
    log(`centroids: given (${opts.centroids})`);
    return { centroids: given, centroidsFrom: 'given', ...none, seconds: (now() - t0) / 1000 };
  }
  if (opts.reuseCentroids && committed) {
    const centroids = loadCentroids(centroidsPath, k, emb.d, 'the existing centroids');
    log(`centroids: reusing ${centroidsPath}`);
    return { centroids, centroidsFrom: 'reused', ...none, seconds: (now() - t0) / 1000 };
  }
  if (existsSync(centroidsPath) && opts.reuseCentroids)
    log(`centroids: ${centroidsPath} was not made from these embeddings with these k-means parameters: training`);
  log(`k-means: k=${k}, niter=${params.niter}, seed=${params.seed}, spherical=${spherical}, N=${emb.n}, D=${emb.d}`);
  const r = await runNative(opts, 'cluster:train', (job) =>
    loadNative().trainKmeans({ ...job, emb: emb.native, ...params, threads, engine: engineFor(device), impl, prune: opts.kmeansPrune, gpuMemoryLimit: opts.gpuMemoryLimit, keepAssignment: extra.keepAssignment ?? false }),
  );
  noteBackend(opts.log, 'k-means training', r);
  if (impl === 'faiss')
    log('k-means: kmeans_impl faiss trains with faiss::Clustering, whose centroids depend on the BLAS kernel and thread count (not reproducible across machines); every row is then assigned by the exact rule');
  if (r.underMinPoints)
    log(`warning: clustering ${emb.n} points to ${k} centroids: FAISS advises at least ${k * params.minPointsPerCentroid} points`);
  if (r.iterations > 0 && r.iterations < params.niter) log(`k-means: stopped after ${r.iterations} of ${params.niter} iterations (no assignment changed)`);
  if (r.searchedRows + r.prunedRows > 0)
    log(`k-means: ${((100 * r.prunedRows) / (r.searchedRows + r.prunedRows)).toFixed(1)}% of row searches skipped by the bounds`);
  writeNpy(centroidsPath, r.centroids, { shape: [k, emb.d] });
  recordStep(opts.outputDir, 'train', trainParams, trainInputs, { centroids: centroidsPath },
    {
      objective: r.objective, iterations: r.iterations, searchedRows: r.searchedRows, prunedRows: r.prunedRows, partialRows: r.partialRows, searchedColumns: r.searchedColumns,
      rescoredRows: r.rescoredRows, filter: r.filter, filterCheckedRows: r.filterCheckedRows, backend: r.backend,
    });
  return {
    centroids: r.centroids, centroidsFrom: 'trained', objective: r.objective, iterations: r.iterations, searchedRows: r.searchedRows, prunedRows: r.prunedRows,
    partialRows: r.partialRows, searchedColumns: r.searchedColumns,
    rescoredRows: r.rescoredRows, filter: r.filter, filterCheckedRows: r.filterCheckedRows, backend: r.backend, seconds: (now() - t0) / 1000,
    ...(r.assigned ? { assigned: r.assigned } : {}),
  };
}

/**
 * Step 2's assignment of a row range (`rows`: a mapping of any range of the embeddings; a planned
 * run's `assign` stage, or all rows): each row's exact nearest centroid and its distance, which
 * depend on that row alone. `known`: rows (of this range) already assigned to these centroids by
 * training, which are not searched again (the same values).
 */
export async function assignRows(
  rows: NativeEmbeddings, n: number, centroids: Float32Array,
  o: CommonOptions & { k: number; spherical: boolean; kmeansImpl: 'engine' | 'faiss' }, stage = 'cluster:assign', known?: Assigned,
): Promise<{ nearest: BigInt64Array; dist: Float32Array; backend: 'cpu' | 'cuda'; rescoredRows: number; filter: CpuFilter; filterCheckedRows: number }> {
  const nearest = new BigInt64Array(n);
  const dist = new Float32Array(n);
  let skip: Uint8Array | undefined;
  if (known && known.rows.length > 0) {
    skip = new Uint8Array(n);
    for (let t = 0; t < known.rows.length; t++) {
      const i = Number(known.rows[t]!);
      if (!(i >= 0 && i < n)) throw new InputError(`the training assignment names row ${i}, outside [0, ${n}); rerun the training`);
      nearest[i] = known.nearest[t]!;
      dist[i] = known.dist[t]!;
      skip[i] = 1;
    }
  }
  const ran = await runNative(o, stage, (job) =>
    loadNative().assignNearest({ ...job, emb: rows, centroids, k: o.k, innerProduct: o.spherical, nearest, dist, threads: o.threads, engine: engineFor(o.device), impl: o.kmeansImpl, ...(skip ? { skip } : {}) }),
  );
  noteBackend(o.log, 'assignment', ran);
  return { nearest, dist, backend: ran.backend, rescoredRows: ran.rescoredRows, filter: ran.filter, filterCheckedRows: ran.filterCheckedRows };
}

/** What the `cluster` record commits: the assignment's parameters and inputs. */
function clusterRecord(dir: string, emb: EmbeddingsLayout, spherical: boolean, k: number) {
  return {
    params: { spherical, k, d: emb.d, n: emb.n, algorithm: ALGORITHM_VERSION },
    inputs: { ...embeddingsInputs(emb), centroids: outputs.centroids(dir) },
  };
}

/** Commits step 2's assignment of every row: nearest_cent.npy, dist_to_cent.npy and the `cluster` record. */
export function commitCluster(dir: string, emb: EmbeddingsLayout, spherical: boolean, k: number, nearest: BigInt64Array, dist: Float32Array, stats: Record<string, unknown>): void {
  writeNpy(outputs.nearest(dir), nearest);
  writeNpy(outputs.dist(dir), dist);
  const { params, inputs } = clusterRecord(dir, emb, spherical, k);
  recordStep(dir, 'cluster', params, inputs, { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) }, stats);
}

export async function computeCentroids(options: ClusterOptions): Promise<ClusterResult> {
  const opts = withDefaults(options);
  const log = opts.log ?? (() => {});
  const emb = opts.embeddings;
  const { k, spherical, kmeansImpl: impl } = opts;
  const t = await trainCentroids(options, { keepAssignment: true });
  const { centroids, centroidsFrom, objective, iterations, searchedRows, prunedRows, partialRows, searchedColumns } = t;
  const rescoredRows = { train: t.rescoredRows, assign: 0 };
  const filterCheckedRows = { train: t.filterCheckedRows, assign: 0 };
  const filter: ClusterResult['filter'] = t.filter ? { train: t.filter } : {};
  const backend: ClusterResult['backend'] = t.backend ? { train: t.backend } : {};
  const tTrain = t.seconds;
  const rec = clusterRecord(opts.outputDir, emb, spherical, k);
  if (stepIsCurrent(opts.outputDir, 'cluster', rec.params, rec.inputs)) {
    const nearest = readNpy(outputs.nearest(opts.outputDir)).data as BigInt64Array;
    const dist = readNpy(outputs.dist(opts.outputDir)).data as Float32Array;
    log('assignment: up to date, reused');
    return {
      centroids, nearest, dist, k, d: emb.d, centroidsFrom, assignmentReused: true, objective, iterations, searchedRows, prunedRows, partialRows, searchedColumns,
      rescoredRows, filter, filterCheckedRows, seconds: { train: tTrain, assign: 0 }, backend,
    };
  }
  const t1 = now();
  // the training rows keep the assignment training ended with (the same values, not searched again)
  const { nearest, dist, ...ran } = await assignRows(emb.native, emb.n, centroids, opts, 'cluster:assign', t.assigned);
  backend.assign = ran.backend;
  rescoredRows.assign = ran.rescoredRows;
  filterCheckedRows.assign = ran.filterCheckedRows;
  filter.assign = ran.filter;
  log(`assignment: ${ran.rescoredRows} of ${emb.n} rows re-scored in float64 (top-2 gap within the float32 pass's error bound)${ran.filter === 'fp32' ? '' : `, ${ran.filterCheckedRows} checked in float32 after the ${ran.filter} filter`}`);
  const tAssign = (now() - t1) / 1000;
  commitCluster(opts.outputDir, emb, spherical, k, nearest, dist, {
    centroidsFrom, objective, iterations, searchedRows, prunedRows, partialRows, searchedColumns, rescoredRows, filter, filterCheckedRows, impl,
    trainSeconds: tTrain, assignSeconds: tAssign, backend, ...kmeansParams(opts),
  });
  return {
    centroids, nearest, dist, k, d: emb.d, centroidsFrom, assignmentReused: false, objective, iterations, searchedRows, prunedRows, partialRows, searchedColumns,
    rescoredRows, filter, filterCheckedRows, seconds: { train: tTrain, assign: tAssign }, backend,
  };
}
