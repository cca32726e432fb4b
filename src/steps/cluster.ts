// Step 2 (the original's compute_centroids; docs/algorithm.md): k-means with FAISS's sampling and
// initialisation whose every assignment is the exact nearest centroid, then the exact nearest
// centroid of every row: the same bytes on every machine, thread count and device. Existing centroids in the output folder are reused, as
// the original resumes. The native engine facade runs both on the GPU or the CPU and says which.
import { existsSync } from 'node:fs';
import { ConfigError, InputError, NumericError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { engineFor, loadNative } from '../native/index.js';
import { validateK } from '../decision.js';
import { embeddingsInputs, type Embeddings } from '../embeddings.js';
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
  /** Rows the float32 pass left undecided and re-scored in float64: in training (all iterations), in the assignment. */
  rescoredRows: { train: number; assign: number };
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

export async function computeCentroids(options: ClusterOptions): Promise<ClusterResult> {
  const opts = withDefaults(options);
  const log = opts.log ?? (() => {});
  const addon = loadNative();
  const emb = opts.embeddings;
  const { k, threads, device, spherical, kmeansImpl: impl } = opts;
  validateK(k, { n: emb.n, file: emb.path });
  const given = opts.centroids ? loadCentroids(opts.centroids, k, emb.d, 'the given centroids') : undefined;
  ensureOutputDir(opts.outputDir);
  const params = {
    k, niter: opts.niter, seed: opts.seed, spherical,
    maxPointsPerCentroid: opts.maxPointsPerCentroid, minPointsPerCentroid: opts.minPointsPerCentroid,
  };
  const centroidsPath = outputs.centroids(opts.outputDir);
  const nearestPath = outputs.nearest(opts.outputDir);
  const distPath = outputs.dist(opts.outputDir);
  const backend: ClusterResult['backend'] = {};

  let centroids: Float32Array;
  let centroidsFrom: ClusterResult['centroidsFrom'];
  let objective: number[] = [];
  let searchedRows = 0;
  let prunedRows = 0;
  let iterations = 0;
  const rescoredRows = { train: 0, assign: 0 };
  const t0 = now();
  // Centroids are committed with what they came from (the given file, or the embeddings and the
  // k-means parameters), and reused only when that is unchanged.
  const trainParams = given ? { given: stamp(opts.centroids!), k, d: emb.d, algorithm: ALGORITHM_VERSION } : { ...params, impl, d: emb.d, algorithm: ALGORITHM_VERSION };
  const trainInputs: Record<string, string> = given ? {} : embeddingsInputs(emb);
  const committed = existsSync(centroidsPath) && stepIsCurrent(opts.outputDir, 'train', trainParams, trainInputs);
  if (given) {
    centroids = given;
    centroidsFrom = 'given';
    if (!committed) {
      writeNpy(centroidsPath, centroids, { shape: [k, emb.d] });
      recordStep(opts.outputDir, 'train', trainParams, trainInputs, { centroids: centroidsPath });
    }
    log(`centroids: given (${opts.centroids})`);
  } else if (opts.reuseCentroids && committed) {
    centroids = loadCentroids(centroidsPath, k, emb.d, 'the existing centroids');
    centroidsFrom = 'reused';
    log(`centroids: reusing ${centroidsPath}`);
  } else {
    if (existsSync(centroidsPath) && opts.reuseCentroids)
      log(`centroids: ${centroidsPath} was not made from these embeddings with these k-means parameters: training`);
    log(`k-means: k=${k}, niter=${params.niter}, seed=${params.seed}, spherical=${spherical}, N=${emb.n}, D=${emb.d}`);
    const r = await runNative(opts, 'cluster:train', (job) =>
      addon.trainKmeans({ ...job, emb: emb.native, ...params, threads, engine: engineFor(device), impl, prune: opts.kmeansPrune, gpuMemoryLimit: opts.gpuMemoryLimit }),
    );
    noteBackend(opts.log, 'k-means training', r);
    backend.train = r.backend;
    if (impl === 'faiss')
      log('k-means: kmeans_impl faiss trains with faiss::Clustering, whose centroids depend on the BLAS kernel and thread count (not reproducible across machines); every row is then assigned by the exact rule');
    if (r.underMinPoints)
      log(`warning: clustering ${emb.n} points to ${k} centroids: FAISS advises at least ${k * params.minPointsPerCentroid} points`);
    centroids = r.centroids;
    objective = r.objective;
    searchedRows = r.searchedRows;
    prunedRows = r.prunedRows;
    iterations = r.iterations;
    rescoredRows.train = r.rescoredRows;
    if (iterations > 0 && iterations < params.niter) log(`k-means: stopped after ${iterations} of ${params.niter} iterations (no assignment changed)`);
    if (r.searchedRows + r.prunedRows > 0)
      log(`k-means: ${((100 * r.prunedRows) / (r.searchedRows + r.prunedRows)).toFixed(1)}% of row searches skipped by the bounds`);
    centroidsFrom = 'trained';
    writeNpy(centroidsPath, centroids, { shape: [k, emb.d] });
    recordStep(opts.outputDir, 'train', trainParams, trainInputs, { centroids: centroidsPath }, { objective, iterations, searchedRows, prunedRows, rescoredRows: r.rescoredRows, backend: r.backend });
  }
  const tTrain = (now() - t0) / 1000;

  const stepParams = { spherical, k, d: emb.d, n: emb.n, algorithm: ALGORITHM_VERSION };
  const inputs = { ...embeddingsInputs(emb), centroids: centroidsPath };
  if (stepIsCurrent(opts.outputDir, 'cluster', stepParams, inputs)) {
    const nearest = readNpy(nearestPath).data as BigInt64Array;
    const dist = readNpy(distPath).data as Float32Array;
    log('assignment: up to date, reused');
    return { centroids, nearest, dist, k, d: emb.d, centroidsFrom, assignmentReused: true, objective, iterations, searchedRows, prunedRows, rescoredRows, seconds: { train: tTrain, assign: 0 }, backend };
  }
  const t1 = now();
  const nearest = new BigInt64Array(emb.n);
  const dist = new Float32Array(emb.n);
  const ran = await runNative(opts, 'cluster:assign', (job) =>
    addon.assignNearest({ ...job, emb: emb.native, centroids, k, innerProduct: spherical, nearest, dist, threads, engine: engineFor(device), impl }),
  );
  noteBackend(opts.log, 'assignment', ran);
  backend.assign = ran.backend;
  rescoredRows.assign = ran.rescoredRows;
  log(`assignment: ${ran.rescoredRows} of ${emb.n} rows re-scored in float64 (top-2 gap within the float32 pass's error bound)`);
  writeNpy(nearestPath, nearest);
  writeNpy(distPath, dist);
  const tAssign = (now() - t1) / 1000;
  recordStep(opts.outputDir, 'cluster', stepParams, inputs, { centroids: centroidsPath, nearest: nearestPath, dist: distPath }, {
    centroidsFrom, objective, iterations, searchedRows, prunedRows, rescoredRows, impl, trainSeconds: tTrain, assignSeconds: tAssign, backend, ...params,
  });
  return { centroids, nearest, dist, k, d: emb.d, centroidsFrom, assignmentReused: false, objective, iterations, searchedRows, prunedRows, rescoredRows, seconds: { train: tTrain, assign: tAssign }, backend };
}
