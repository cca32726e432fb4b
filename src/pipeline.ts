// The pipeline driven by a resolved config: what the CLI's commands run. Each command opens the
// embeddings once (prepareEmbeddings: checked once, normalised once) and hands that one handle to
// every step it runs; the device choice travels down to the native engine facade, which decides.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requireKeys, type PartialResolved } from './config.js';
import { embeddingsLayout, type Embeddings, type EmbeddingsSpec } from './embeddings.js';
import { checkContents, prepareEmbeddings } from './steps/check.js';
import type { ScanStats } from './native.js';
import { checkUniqueIds, idsInputs, readIdsFrom, type Ids } from './io/ids.js';
import { resolveInputFiles, sourceName } from './io/inputs.js';
import { computeCentroids, type ClusterResult } from './steps/cluster.js';
import { assignAndSortClusters, type SortResult } from './steps/sort.js';
import { semdedup, type DedupResult } from './steps/dedup.js';
import { extractPrunedData, extractPrunedDataAll, type ExtractResult } from './steps/extract.js';
import { atomicWriteFile } from './io/atomic.js';
import { outputs } from './layout.js';
import { type CommonOptions } from './steps/common.js';
import { readManifest, recordStep, requireCommitted, requireSameInputs, sweepStale, writeManifest } from './manifest.js';
import { checkRunEmbeddings } from './after/common.js';
import { InputError } from './errors.js';
import { toManifest } from './config.js';
import { nativeInfo } from './native.js';
import { withLock } from './lock.js';
import { capThreads, validateInputs } from './validate.js';
import { rankValuesOf } from './inputs.js';

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
export function resolveIds(cfg: PartialResolved, outputDir: string | undefined, log?: (l: string) => void, opts: { verify?: boolean } = {}): Ids | undefined {
  const src = cfg.ids ? { ids: cfg.ids, format: cfg.idsFormat, dtype: cfg.idsDtype } : outputDir ? recordedIds(outputDir) : undefined;
  if (opts.verify && outputDir) {
    // A reader of a finished run: the embeddings and the ids it is given must be the run's
    // (checked before anything is read from them, so the message says what changed).
    if (cfg.embeddings) checkRunEmbeddings(outputDir, 'dedup', cfg.embeddings);
    if (src) requireSameInputs(outputDir, 'extract', 'ids', resolveInputFiles(src.ids, 'ids', 'ids'), 'ids');
  }
  if (!src) return undefined;
  const present = cfg.embeddings && (typeof cfg.embeddings !== 'string' || /[*?[]/.test(cfg.embeddings) || existsSync(cfg.embeddings));
  const layout = present ? embeddingsLayout(embeddingsSpecOf(cfg)) : undefined;
  const n = layout ? layout.n : cfg.datasetSize;
  const ids = readIdsFrom(src.ids, {
    format: src.format, ...(src.dtype ? { dtype: src.dtype } : {}), ...(n !== undefined ? { count: n } : {}),
    ...(layout?.shards && resolveInputFiles(src.ids, 'ids', 'ids').length > 1 ? { shardCounts: layout.shards.map((s) => s.n) } : {}),
  });
  const name = sourceName(src.ids);
  checkUniqueIds(ids, name);
  log?.(`ids: ${name}`);
  return ids;
}

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

/** Records the config and the engine in the manifest of the output folder. */
function noteConfig(cfg: PartialResolved, outputDir: string): void {
  const m = readManifest(outputDir);
  const info = nativeInfo();
  m.config = toManifest(cfg);
  m.configFiles = cfg.files;
  m.engine = { name: 'semdedup', version: info.version, faiss: info.faiss, blasCore: info.blasCore };
  writeManifest(outputDir, m);
}

export async function runCluster(cfg: PartialResolved, opts: CommonOptions = {}, given?: Embeddings): Promise<ClusterResult> {
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
    noteConfig(cfg, c.outputDir);
    return r;
  }
  validateInputs(cfg, 'cluster');
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, async () => {
    const r = await withEmbeddings(cfg, c.outputDir, opts, run, scanned);
    noteConfig(cfg, c.outputDir);
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
      sortedClustersDir: c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters'),
      ...(emb ? { embeddings: emb } : {}),
      ...(ids ? { ids } : {}),
    });
  if (given) return run(needEmb ? given.embeddings : undefined);
  validateInputs(cfg, 'sort');
  const sweep = [c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters')];
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

/** The ids file recorded in the output folder's manifest by an earlier step, if any. */
function recordedIds(outputDir: string): { ids: string | string[]; format: 'auto' | 'memmap' | 'npy' | 'text'; dtype?: string } | undefined {
  const m = readManifest(outputDir);
  const ids = m.config?.ids;
  if (ids === undefined || ids === null) return undefined;
  if (!(typeof ids === 'string' || (Array.isArray(ids) && ids.length > 0 && ids.every((f) => typeof f === 'string')))) return undefined;
  // Every file of the recorded ids (a glob or folder as it was given) must still be there.
  const files = resolveInputFiles(ids as string | string[], 'ids', 'ids');
  const gone = files.find((f) => !existsSync(f));
  if (gone !== undefined)
    throw new InputError(`${gone}: the ids file that ${outputs.manifest(outputDir)} records for this run is missing; restore it, or give the ids (ids: in the config, --set ids=...)`, { file: gone });
  const format = (m.config?.ids_format as 'auto' | 'memmap' | 'npy' | 'text' | undefined) ?? 'auto';
  const dtype = m.config?.ids_dtype as string | undefined;
  return { ids: ids as string | string[], format, ...(dtype ? { dtype } : {}) };
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
  validateInputs(cfg, 'run');
  const ids = resolveIds(cfg, undefined, opts.log);
  const scanned = await precheck(cfg, c.outputDir, opts);
  return withLock(c.outputDir, () => runAllLocked(cfg, c, ids, opts, scanned), [c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters')]);
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
    outputDir: c.outputDir, epsList: c.epsList, outputs: c.epsList.map((eps) => join(c.outputDir, `kept_eps${eps}.txt`)),
    order: c.keptOrder, fileFormat: c.keptFileFormat === 'original' ? 'original' : 'posix',
    data: { keepOrder: dedup.keepOrder, M: dedup.M }, ...(ids ? { ids } : {}), ...common(cfg, opts),
  });
  const t4 = performance.now();
  const seconds = { cluster: (t1 - t0) / 1000, sort: (t2 - t1) / 1000, dedup: (t3 - t2) / 1000, extract: (t4 - t3) / 1000, total: (t4 - t0) / 1000 };
  atomicWriteFile(
    outputs.summary(c.outputDir),
    JSON.stringify({ n, clusters: cluster.k, whichToKeep: c.whichToKeep, eps: dedup.summary, seconds }, null, 2) + '\n',
  );
  commitExtract(c.outputDir, c.epsList, ids, (eps) => join(c.outputDir, `kept_eps${eps}.txt`));
  sweepStale(c.outputDir, c.sortedClustersDir ?? join(c.outputDir, 'sorted_clusters'));
  return { cluster, sort, dedup, extract, seconds };
}

/**
 * Commits step 5 of a run (single or planned): the kept lists and rows of every eps and the
 * summary, from the committed keep order and M and the ids they name (so that readers can check
 * that the ids they are given are the run's).
 */
export function commitExtract(outputDir: string, epsList: readonly number[], ids: Ids | undefined, listOf: (eps: number) => string): void {
  const outs: Record<string, string> = { summary: outputs.summary(outputDir) };
  for (const eps of epsList) {
    outs[`kept_eps${eps}`] = listOf(eps);
    outs[`kept_rows_eps${eps}`] = outputs.keptRows(outputDir, eps);
  }
  const inputs: Record<string, string> = { keepOrder: outputs.keepOrder(outputDir), M: outputs.M(outputDir), ...idsInputs(ids) };
  recordStep(outputDir, 'extract', { epsList: [...epsList] }, inputs, outs);
}
