// The pipeline driven by a resolved config: what the CLI's commands run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requireKeys, type PartialResolved } from './config.js';
import { embeddingsLayout, type EmbeddingsSpec } from './embeddings.js';
import { checkUniqueIds, readIds, type Ids } from './io/ids.js';
import { computeCentroids, type ClusterResult } from './steps/cluster.js';
import { assignAndSortClusters, type SortResult } from './steps/sort.js';
import { semdedup, type DedupResult } from './steps/dedup.js';
import { extractPrunedData, type ExtractResult } from './steps/extract.js';
import { atomicWriteFile } from './io/atomic.js';
import { outputs } from './layout.js';
import { type CommonOptions } from './steps/common.js';
import { readManifest, writeManifest } from './manifest.js';
import { toManifest } from './config.js';
import { loadNative } from './native.js';
import { withLock } from './lock.js';
import { capThreads, validateInputs } from './validate.js';

export function embeddingsSpecOf(cfg: PartialResolved): EmbeddingsSpec {
  const c = requireKeys(cfg, ['embeddings'], 'this step');
  return {
    path: c.embeddings,
    format: c.embeddingsFormat,
    dtype: c.embeddingsDtype,
    ...(c.datasetSize !== undefined ? { count: c.datasetSize } : {}),
    ...(c.dim !== undefined ? { dim: c.dim } : {}),
  };
}

/**
 * The ids (checked unique): the config's ids file, else the one recorded in the output folder's
 * manifest by an earlier step (the original's semdedup_configs.yaml names none); undefined means
 * row numbers. Read once per command and handed to the steps that write ids.
 */
export function resolveIds(cfg: PartialResolved, outputDir: string | undefined, log?: (l: string) => void): Ids | undefined {
  const src = cfg.ids ? { ids: cfg.ids, format: cfg.idsFormat, dtype: cfg.idsDtype } : outputDir ? recordedIds(outputDir) : undefined;
  if (!src) return undefined;
  const n = cfg.embeddings && existsSync(cfg.embeddings) ? embeddingsLayout(embeddingsSpecOf(cfg)).n : cfg.datasetSize;
  const ids = readIds(src.ids, { format: src.format, ...(src.dtype ? { dtype: src.dtype } : {}), ...(n !== undefined ? { count: n } : {}) });
  checkUniqueIds(ids, src.ids);
  log?.(`ids: ${src.ids}`);
  return ids;
}

function common(cfg: PartialResolved, opts: CommonOptions): CommonOptions {
  return { threads: capThreads(cfg.threads, opts.log), device: cfg.device, ...opts };
}

/** Records the config and the engine in the manifest of the output folder. */
function noteConfig(cfg: PartialResolved, outputDir: string): void {
  const m = readManifest(outputDir);
  const info = loadNative().info();
  m.config = toManifest(cfg);
  m.configFiles = cfg.files;
  m.engine = { name: 'semdedup', version: info.version, faiss: info.faiss, blasCore: info.blasCore };
  writeManifest(outputDir, m);
}

export async function runCluster(cfg: PartialResolved, opts: CommonOptions = {}): Promise<ClusterResult> {
  const c = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'semdedup cluster');
  validateInputs(cfg, 'cluster');
  return withLock(c.outputDir, () => clusterLocked(cfg, c, opts));
}

async function clusterLocked(cfg: PartialResolved, c: ReturnType<typeof requireKeys<PartialResolved, 'embeddings' | 'output_dir' | 'k'>>, opts: CommonOptions): Promise<ClusterResult> {
  const r = await computeCentroids({
    ...common(cfg, opts),
    embeddings: embeddingsSpecOf(cfg),
    outputDir: c.outputDir,
    k: c.k,
    niter: c.niter,
    seed: c.seed,
    spherical: c.spherical,
    maxPointsPerCentroid: c.maxPointsPerCentroid,
    minPointsPerCentroid: c.minPointsPerCentroid,
    normalize: c.normalize,
    impl: c.kmeansImpl,
    ...(c.centroids ? { centroids: c.centroids } : {}),
  });
  noteConfig(cfg, c.outputDir);
  return r;
}

export async function runSort(cfg: PartialResolved, opts: CommonOptions = {}, given?: { ids?: Ids }): Promise<SortResult> {
  const c = requireKeys(cfg, ['output_dir'], 'semdedup sort');
  const needEmb = c.simMetric === 'cosine' && !c.spherical;
  if (!given) validateInputs(cfg, 'sort');
  const ids = c.exportSortedClusters ? (given ? given.ids : resolveIds(cfg, c.outputDir, opts.log)) : undefined;
  return withLock(c.outputDir, () => assignAndSortClusters({
    ...common(cfg, opts),
    outputDir: c.outputDir,
    simMetric: c.simMetric,
    keepHard: c.keepHard,
    spherical: c.spherical,
    normalize: c.normalize,
    exportSortedClusters: c.exportSortedClusters,
    sortedClustersDir: c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters'),
    ...(needEmb ? { embeddings: embeddingsSpecOf(cfg) } : {}),
    ...(ids ? { ids } : {}),
  }), [c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters')]);
}

export async function runDedup(cfg: PartialResolved, opts: CommonOptions = {}): Promise<DedupResult> {
  const c = requireKeys(cfg, ['embeddings', 'output_dir'], 'semdedup dedup');
  validateInputs(cfg, 'dedup');
  return withLock(c.outputDir, () => semdedup({
    ...common(cfg, opts),
    embeddings: embeddingsSpecOf(cfg),
    outputDir: c.outputDir,
    whichToKeep: c.whichToKeep,
    epsList: c.epsList,
    seed: c.seed,
    normalize: c.normalize,
  }));
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
  // The dedup results are read only when committed for the requested keep order (and seed).
  const set = (k: string) => cfg.sources?.[k] !== undefined && cfg.sources[k] !== 'default';
  const want = {
    ...(set('which_to_keep') ? { whichToKeep: c.whichToKeep } : {}),
    ...(set('seed') && c.whichToKeep === 'random' ? { seed: c.seed } : {}),
  };
  return withLock(c.outputDir, () => extractPrunedData({
    want,
    outputDir: c.outputDir,
    eps,
    ...(opts.dedup ? { data: { keepOrder: opts.dedup.keepOrder, M: opts.dedup.M } } : {}),
    ...(output ? { output } : {}),
    ...(opts.removed ? { removed: true } : {}),
    ...(ids ? { ids } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  }));
}

/** The ids file recorded in the output folder's manifest by an earlier step, if any. */
function recordedIds(outputDir: string): { ids: string; format: 'auto' | 'memmap' | 'npy' | 'text'; dtype?: string } | undefined {
  const m = readManifest(outputDir);
  const ids = m.config?.ids;
  if (typeof ids !== 'string' || !existsSync(ids)) return undefined;
  const format = (m.config?.ids_format as 'auto' | 'memmap' | 'npy' | 'text' | undefined) ?? 'auto';
  const dtype = m.config?.ids_dtype as string | undefined;
  return { ids, format, ...(dtype ? { dtype } : {}) };
}

export interface RunResult {
  cluster: ClusterResult;
  sort: SortResult;
  dedup: DedupResult;
  extract: ExtractResult[];
  seconds: Record<string, number>;
}

/** All steps: cluster, sort, dedup, then extract for every eps (kept ids to `kept_eps{eps}.txt`). */
export async function runAll(cfg: PartialResolved, opts: CommonOptions = {}): Promise<RunResult> {
  const c = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'semdedup run');
  // Check every input, and read (and check) the ids once, before hours of work and before any
  // file is written; then hold the output folder for the whole run.
  const n = validateInputs(cfg, 'run').layout!.n;
  const ids = resolveIds(cfg, undefined, opts.log);
  return withLock(c.outputDir, () => runAllLocked(cfg, c, n, ids, opts), [c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters')]);
}

async function runAllLocked(cfg: PartialResolved, c: ReturnType<typeof requireKeys<PartialResolved, 'embeddings' | 'output_dir' | 'k'>>, n: number, ids: Ids | undefined, opts: CommonOptions): Promise<RunResult> {
  const t0 = performance.now();
  const cluster = await runCluster(cfg, opts);
  const t1 = performance.now();
  const sort = await runSort(cfg, opts, { ids });
  const t2 = performance.now();
  const dedup = await runDedup(cfg, opts);
  const t3 = performance.now();
  const extract: ExtractResult[] = [];
  for (const eps of c.epsList)
    extract.push(await runExtract(cfg, eps, join(c.outputDir, `kept_eps${eps}.txt`), { ids, dedup, ...(opts.log ? { log: opts.log } : {}) }));
  const t4 = performance.now();
  const seconds = { cluster: (t1 - t0) / 1000, sort: (t2 - t1) / 1000, dedup: (t3 - t2) / 1000, extract: (t4 - t3) / 1000, total: (t4 - t0) / 1000 };
  atomicWriteFile(
    outputs.summary(c.outputDir),
    JSON.stringify({ n, clusters: cluster.k, whichToKeep: c.whichToKeep, eps: dedup.summary, seconds }, null, 2) + '\n',
  );
  return { cluster, sort, dedup, extract, seconds };
}
