// The pipeline driven by a resolved config: what the CLI's commands run. Each command opens the
// embeddings once (prepareEmbeddings: checked once, normalised once) and hands that one handle to
// every step it runs; the device choice travels down to the native engine facade, which decides.
import { existsSync } from 'node:fs';
import { applyDefaultK, configWarnings, requireKeys, resolveOptions, type PartialResolved, type RunAllOptions, type RunOptions } from './config.js';
import { readNpyHeaderFromFile } from './io/npy.js';
import { type Embeddings } from './embeddings.js';
import { checkContents, prepareEmbeddings } from './steps/check.js';
import type { ScanStats } from './native/index.js';
import { type Ids } from './io/ids.js';
import { computeCentroids, type ClusterResult } from './steps/cluster.js';
import { assignAndSortClusters, type SortResult } from './steps/sort.js';
import { semdedup, writeSummary, type DedupResult } from './steps/dedup.js';
import { commitExtract, extractPrunedData, extractPrunedDataAll, type ExtractResult } from './steps/extract.js';
import { outputs } from './layout.js';
import { commitConfig, type CommonOptions } from './steps/common.js';
import { requireCommitted, sweepStale } from './manifest.js';
import { withLock } from './lock.js';
import { capThreads, validateInputs } from './validate.js';
import { embeddingsSpecOf, rankValuesOf, resolveIds } from './inputs.js';

export { embeddingsSpecOf, resolveIds } from './inputs.js';
export { commitExtract } from './steps/extract.js';

function common(cfg: PartialResolved, opts: CommonOptions): CommonOptions {
  return { threads: capThreads(cfg.threads, opts.log), device: cfg.device, gpuMemoryLimit: cfg.gpuMemoryLimit, ...opts };
}

/** The embeddings' contents checked before the output folder is created or locked (nothing written). */
function precheck(cfg: PartialResolved, outputDir: string, opts: CommonOptions): Promise<ScanStats | undefined> {
  return checkContents(embeddingsSpecOf(cfg), { ...common(cfg, opts), outputDir, normalize: cfg.normalize });
}

/** Opens and checks the config's embeddings for `outputDir`, runs `fn` with the handle, closes it. */
async function withEmbeddings<T>(cfg: PartialResolved, outputDir: string, opts: CommonOptions, fn: (emb: Embeddings) => Promise<T>, scanned?: ScanStats): Promise<T> {
  const emb = await prepareEmbeddings(embeddingsSpecOf(cfg), { ...common(cfg, opts), outputDir, normalize: cfg.normalize, ...(scanned ? { scanned } : {}) });
  try {
    return await fn(emb);
  } finally {
    emb.close();
  }
}

/**
 * The config of a command that clusters: options validated (a loaded config passes as it is,
 * copied), warnings logged, and k set from N when unset (from the given centroids' rows, when
 * there are centroids). Returns the config; `validateInputs` has checked the inputs.
 */
function clusteringConfig(config: PartialResolved | RunOptions, command: 'cluster' | 'run', opts: CommonOptions): PartialResolved {
  const cfg: PartialResolved = { ...resolveOptions(config) };
  requireKeys(cfg, ['embeddings', 'output_dir'], `semdedup ${command}`);
  for (const w of configWarnings(cfg)) warn(w, opts);
  const { layout } = validateInputs(cfg, command);
  if (cfg.k === undefined && cfg.centroids) {
    cfg.k = readNpyHeaderFromFile(cfg.centroids).shape[0];
    cfg.sources = { ...cfg.sources, k: 'centroids' };
  }
  if (layout) {
    const line = applyDefaultK(cfg, layout.n);
    if (line) opts.log?.(line);
  }
  return cfg;
}

/** A warning: to the log when there is one, else as a process warning (the API without a log). */
export function warn(line: string, opts: { log?: (l: string) => void }): void {
  if (opts.log) opts.log(line);
  else process.emitWarning(line.replace(/^warning: /, ''), 'SemDedupWarning');
}

export async function runCluster(config: PartialResolved | RunOptions, opts: CommonOptions = {}, given?: Embeddings): Promise<ClusterResult> {
  const cfg = given ? resolveOptions(config) : clusteringConfig(config, 'cluster', opts);
  const c = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'semdedup cluster');
  const run = (emb: Embeddings) =>
    computeCentroids({
      ...common(cfg, opts),
      embeddings: emb,
      outputDir: c.outputDir,
      k: c.k,
      niter: c.niter,
      seed: c.seed,
      spherical: c.spherical,
      maxPointsPerCentroid: c.maxPointsPerCentroid,
      minPointsPerCentroid: c.minPointsPerCentroid,
      kmeansImpl: c.kmeansImpl,
      kmeansPrune: c.kmeansPrune,
      reuseCentroids: c.reuseCentroids,
      ...(c.centroids ? { centroids: c.centroids } : {}),
    });
  if (given) {
    const r = await run(given);
    commitConfig(c.outputDir, cfg);
    return r;
  }
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, async () => {
    const r = await withEmbeddings(cfg, c.outputDir, opts, run, scanned);
    commitConfig(c.outputDir, cfg);
    sweepStale(c.outputDir, c.sortedClustersDir);
    return r;
  });
}

export async function runSort(cfg: PartialResolved, opts: CommonOptions = {}, given?: { ids?: Ids; embeddings?: Embeddings }): Promise<SortResult> {
  const c = requireKeys(cfg, ['output_dir'], 'semdedup sort');
  const needEmb = c.simMetric === 'cosine' && !c.spherical;
  if (!given) {
    // The cluster step's results, and the embeddings it read, before anything else: a changed or
    // missing input is reported as such, with what to rerun (the step checks again under the lock).
    if (existsSync(outputs.manifest(c.outputDir))) requireCommitted(c.outputDir, 'cluster', {});
    validateInputs(cfg, 'sort');
  }
  const ids = c.exportSortedClusters ? (given && 'ids' in given ? given.ids : resolveIds(cfg, c.outputDir, opts.log)) : undefined;
  const run = (emb: Embeddings | undefined) =>
    assignAndSortClusters({
      ...common(cfg, opts),
      outputDir: c.outputDir,
      simMetric: c.simMetric,
      keepHard: c.keepHard,
      spherical: c.spherical,
      exportSortedClusters: c.exportSortedClusters,
      sortedClustersDir: c.sortedClustersDir ?? outputs.sortedClusters(c.outputDir),
      ...(emb ? { embeddings: emb } : {}),
      ...(ids ? { ids } : {}),
    });
  if (given) return run(needEmb ? given.embeddings : undefined);
  validateInputs(cfg, 'sort');
  const sweep = [c.sortedClustersDir ?? outputs.sortedClusters(c.outputDir)];
  const stale = <T>(r: T): T => {
    sweepStale(c.outputDir, sweep[0]);
    return r;
  };
  if (!needEmb) return withLock(c.outputDir, async () => stale(await run(undefined)), sweep);
  requireKeys(cfg, ['embeddings'], 'semdedup sort (sim_metric cosine with non-spherical k-means)');
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, async () => stale(await withEmbeddings(cfg, c.outputDir, opts, run, scanned)), sweep);
}

export async function runDedup(cfg: PartialResolved, opts: CommonOptions = {}, given?: Embeddings): Promise<DedupResult> {
  const c = requireKeys(cfg, ['embeddings', 'output_dir'], 'semdedup dedup');
  const run = (emb: Embeddings) =>
    semdedup({
      ...common(cfg, opts),
      embeddings: emb,
      outputDir: c.outputDir,
      whichToKeep: c.whichToKeep,
      epsList: c.epsList,
      seed: c.seed,
      exactDuplicates: c.exactDuplicates,
      ...(cfg.rankBy ? { rank: rankValuesOf(cfg)! } : {}),
    });
  if (given) return run(given);
  for (const w of configWarnings(cfg)) warn(w, opts);
  // The sort step's results, and the embeddings they came from, first (as runSort).
  if (existsSync(outputs.manifest(c.outputDir))) requireCommitted(c.outputDir, 'sort', {});
  validateInputs(cfg, 'dedup');
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, async () => {
    const r = await withEmbeddings(cfg, c.outputDir, opts, run, scanned);
    sweepStale(c.outputDir, c.sortedClustersDir);
    return r;
  });
}

export async function runExtract(
  cfg: PartialResolved,
  eps: number,
  output: string | undefined,
  opts: { removed?: boolean; log?: (l: string) => void; ids?: Ids; dedup?: DedupResult } = {},
): Promise<ExtractResult> {
  const c = requireKeys(cfg, ['output_dir'], 'semdedup extract');
  if (!opts.dedup) validateInputs(cfg, 'extract', { eps });
  const ids = 'ids' in opts ? opts.ids : resolveIds(cfg, c.outputDir, opts.log);
  return withLock(c.outputDir, () =>
    extractPrunedData({
      want: dedupWanted(cfg),
      outputDir: c.outputDir,
      eps,
      ...(opts.dedup ? { data: { keepOrder: opts.dedup.keepOrder, M: opts.dedup.M } } : {}),
      ...(output ? { output } : {}),
      ...(opts.removed ? { removed: true } : {}),
      order: cfg.keptOrder, fileFormat: cfg.keptFileFormat === 'original' ? 'original' : 'posix',
      ...(ids ? { ids } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    }),
  );
}

/**
 * The dedup params that extract requires of the committed step-4 files: the keep order (and the
 * seed of a random one) when the config sets them explicitly rather than by default.
 */
export function dedupWanted(cfg: PartialResolved): Record<string, unknown> {
  const set = (k: string) => cfg.sources?.[k] !== undefined && cfg.sources[k] !== 'default';
  return {
    ...(set('which_to_keep') ? { whichToKeep: cfg.whichToKeep } : {}),
    ...(set('seed') && cfg.whichToKeep === 'random' ? { seed: cfg.seed } : {}),
  };
}

export interface RunResult {
  cluster: ClusterResult;
  sort: SortResult;
  dedup: DedupResult;
  extract: ExtractResult[];
  seconds: Record<string, number>;
}

/**
 * All steps: cluster, sort, dedup, then extract for every eps (kept ids to `kept_eps{eps}.txt`).
 * Takes a loaded config (loadConfigFiles) or options (`{embeddings, outputDir, k, epsList}`: the
 * rest take the schema's defaults, k its default from N).
 */
export async function runAll(config: PartialResolved | RunAllOptions, opts: CommonOptions = {}): Promise<RunResult> {
  // Check every input, and read (and check) the ids once, before hours of work and before any
  // file is written; then hold the output folder for the whole run.
  const cfg = clusteringConfig(config, 'run', opts);
  const c = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'semdedup run');
  const ids = resolveIds(cfg, undefined, opts.log);
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, () => runAllLocked(cfg, c, ids, opts, scanned), [c.sortedClustersDir ?? outputs.sortedClusters(c.outputDir)]);
}

async function runAllLocked(
  cfg: PartialResolved,
  c: ReturnType<typeof requireKeys<PartialResolved, 'embeddings' | 'output_dir' | 'k'>>,
  ids: Ids | undefined,
  opts: CommonOptions,
  scanned?: ScanStats,
): Promise<RunResult> {
  const t0 = performance.now();
  const { n, cluster, sort, dedup, t1, t2 } = await withEmbeddings(cfg, c.outputDir, opts, async (emb) => {
    const cluster = await runCluster(cfg, opts, emb);
    const t1 = performance.now();
    const sort = await runSort(cfg, opts, { ids, embeddings: emb });
    const t2 = performance.now();
    const dedup = await runDedup(cfg, opts, emb);
    return { n: emb.n, cluster, sort, dedup, t1, t2 };
  }, scanned);
  const t3 = performance.now();
  // Every eps in one pass (the ids and step 4's arrays shared).
  const extract: ExtractResult[] = await extractPrunedDataAll({
    outputDir: c.outputDir, epsList: c.epsList, outputs: c.epsList.map((eps) => outputs.keptList(c.outputDir, eps)),
    order: c.keptOrder, fileFormat: c.keptFileFormat === 'original' ? 'original' : 'posix',
    data: { keepOrder: dedup.keepOrder, M: dedup.M }, ...(ids ? { ids } : {}), ...common(cfg, opts),
  });
  const t4 = performance.now();
  const seconds = { cluster: (t1 - t0) / 1000, sort: (t2 - t1) / 1000, dedup: (t3 - t2) / 1000, extract: (t4 - t3) / 1000, total: (t4 - t0) / 1000 };
  writeSummary(c.outputDir, { n, clusters: cluster.k, whichToKeep: c.whichToKeep, eps: dedup.summary, dedupStats: dedup.stats, seconds });
  commitExtract(c.outputDir, c.epsList, ids);
  sweepStale(c.outputDir, c.sortedClustersDir ?? outputs.sortedClusters(c.outputDir));
  return { cluster, sort, dedup, extract, seconds };
}
