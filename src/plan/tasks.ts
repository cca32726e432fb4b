// The tasks of a plan (`semdedup task <stage> <index> --plan <manifest>`). Each reads and writes
// files under the output folder only, and a task that finds its outputs complete does nothing:
//   train    the embeddings check (and normalised copy) and k-means on the seeded sample (1 task)
//   assign   the nearest centroid and step 3's ranking key of a row range (each row's exact nearest
//            centroid and float64 value depend on that row alone, so the bits are the single run's)
//   group    step 3 for a range of clusters: their rows gathered and ranked
//   dedup    step 4's M for a share of the clusters balanced by cost, large clusters in row blocks
//   extract  the final files: the single-process run's, assembled from the parts, and the ids per eps
// A task computes with the steps' own functions over its range (trainCentroids, assignRows,
// rankKeys, rankClusterRange, maxSimilarityOfClusters / maxSimilarityOfBlock) and the extract task
// commits with the steps' own commit functions: a step's logic and its manifest record live in
// src/steps/ only. Only the cutting into ranges and the assembling of the parts live here.
import { existsSync, mkdirSync } from 'node:fs';
import { InputError, SemDedupError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { engineFor, loadNative, type CpuFilter, type MPrecision, type NativeEmbeddings } from '../native/index.js';
import { embeddingsFiles, embeddingsStamp, openLayout, openRowRange, type Embeddings, type EmbeddingsLayout } from '../embeddings.js';
import { commitExact, findExactDuplicates, type ExactDuplicatesResult } from '../steps/exact.js';
import { embeddingsSpecOf, rankValuesOf, resolveIds } from '../inputs.js';
import { assignRows, commitCluster, trainCentroids, type Assigned } from '../steps/cluster.js';
import { commitSort, exportSortedClusters, rankClusterRange, rankKeys, writeSortFiles } from '../steps/sort.js';
import {
  addMaxSimCounts, commitDedup, keepOrderOf, noMaxSimCounts, writeDedupFiles, maxSimilarityOfBlock, maxSimilarityOfClusters, writeSummary, type WhichToKeep,
} from '../steps/dedup.js';
import { commitExtract, extractPrunedDataAll } from '../steps/extract.js';
import { prepareEmbeddings } from '../steps/check.js';
import { commitConfig, ensureOutputDir, noteBackend, type CommonOptions } from '../steps/common.js';
import { withDefaults, type PartialResolved } from '../config.js';
import { matches, sweepStale, type FileStamp } from '../manifest.js';
import { planPaths, stageOf, type Plan, type Stage } from './plan.js';
import { isComplete, newState, outputStamp, readState, verifiedOutput, writeState, type TaskState } from './state.js';
import { dedupItems, type DedupItem } from './partition.js';
import { lockOutputDir } from '../lock.js';

export interface TaskOptions extends CommonOptions {
  /** Overrides the config's threads (a local worker's share of the cores). */
  threads?: number;
  /** The task's log file, recorded for `status` and failure messages. */
  logFile?: string;
}

/** The embeddings' layout the tasks map (one file or shards). */
type EffectiveLayout = EmbeddingsLayout;

type TaskResult = { outputs: Record<string, string>; info?: Record<string, unknown> };

function cfgOf(plan: Plan): ReturnType<typeof withDefaults<PartialResolved>> {
  return withDefaults(plan.config);
}

/** The options every step function of a task takes: the config's backend, the task's threads. */
function stepOptions(cfg: ReturnType<typeof cfgOf>, o: TaskOptions): CommonOptions {
  return {
    ...(o.log ? { log: o.log } : {}), ...(o.signal ? { signal: o.signal } : {}), ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    threads: o.threads ?? cfg.threads, device: cfg.device, gpuMemoryLimit: cfg.gpuMemoryLimit,
  };
}

/** The embeddings the tasks read: the input, or the normalised copy the train task made. */
function effectiveLayout(plan: Plan): EffectiveLayout {
  const s = readState(plan, 'train', 0);
  const e = s?.info?.embeddings as EffectiveLayout | undefined;
  const where = planPaths.state(plan.outputDir, 'train', 0);
  if (!s || s.state !== 'done' || !e) throw new InputError(`${where}: the train task has not completed`, { file: where });
  // The rows the train task checked and clustered (every shard), unchanged since.
  const read = s.info?.embeddingsStamp as FileStamp | FileStamp[] | undefined;
  const files = embeddingsFiles(e);
  const stamps = read === undefined ? [] : Array.isArray(read) ? read : [read];
  const changed = stamps.length !== files.length ? files[0]! : files.find((f, i) => !matches(stamps[i], f));
  if (changed !== undefined)
    throw new InputError(`${changed}: the embeddings changed since the train task read them; rerun the planned run (semdedup run --executor ...)`, { file: changed });
  return e;
}

/** A mapping of rows [begin, end) of the effective embeddings (across shard boundaries). */
function openRows(e: EffectiveLayout, begin: number, end: number): NativeEmbeddings {
  return openRowRange(e, begin, end);
}

/** The centroids the train task wrote (checked against its record, and their shape against the plan). */
function readCentroids(plan: Plan): Float32Array {
  const p = outputs.centroids(plan.outputDir);
  if (!existsSync(p)) throw new InputError(`${p} not found: the train task has not completed`, { file: p });
  verifiedOutput(plan, 'train', 0, 'centroids');
  const { header, data } = readNpy(p);
  if (!(data instanceof Float32Array) || header.shape.length !== 2 || header.shape[0] !== plan.k || header.shape[1] !== plan.d)
    throw new InputError(`${p}: centroids of shape (${header.shape.join(', ')}), the plan has k = ${plan.k}, D = ${plan.d}; rerun the planned run`, { file: p });
  return data;
}

/** The train task's outputs that hold the training rows' assignment (trainCentroids's `assigned`). */
const ASSIGNED = { assignedRows: 'rows', assignedNearest: 'nearest', assignedDist: 'dist' } as const;

/**
 * The training rows of [b, e) with their assignment to the final centroids, as the train task
 * kept it (rows relative to b), for assignRows; undefined when training kept none (centroids given
 * or reused), as in a single run.
 */
function assignedInRange(plan: Plan, b: number, e: number): Assigned | undefined {
  const st = readState(plan, 'train', 0);
  if (!st?.outputs?.assignedRows) return undefined;
  const read = (name: keyof typeof ASSIGNED) => readNpy(verifiedOutput(plan, 'train', 0, name)).data;
  const rows = read('assignedRows') as BigInt64Array;
  const nearest = read('assignedNearest') as BigInt64Array;
  const dist = read('assignedDist') as Float32Array;
  if (nearest.length !== rows.length || dist.length !== rows.length)
    throw new InputError(`${planPaths.part(plan.outputDir, 'train', 'assignedRows', 0)}: the train task's assignment holds ${rows.length} rows, ${nearest.length} centroids and ${dist.length} distances; rerun the planned run`);
  const keep: number[] = [];
  const lo = BigInt(b), hi = BigInt(e);
  for (let t = 0; t < rows.length; t++) if (rows[t]! >= lo && rows[t]! < hi) keep.push(t);
  return {
    rows: BigInt64Array.from(keep, (t) => rows[t]! - lo),
    nearest: BigInt64Array.from(keep, (t) => nearest[t]!),
    dist: Float32Array.from(keep, (t) => dist[t]!),
  };
}

async function train(plan: Plan, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const threads = o.threads ?? cfg.threads;
  const emb = await prepareEmbeddings(embeddingsSpecOf(plan.config), { ...o, threads, device: cfg.device, outputDir: dir, normalize: cfg.normalize });
  try {
    // Step 2's training, as a single run does it (given, reused or trained; the `train` record),
    // keeping the training rows' assignment to the final centroids for the assign tasks.
    const t = await trainCentroids({
      ...stepOptions(cfg, o), embeddings: emb, outputDir: dir, k: plan.k,
      niter: cfg.niter, seed: cfg.seed, spherical: cfg.spherical, maxPointsPerCentroid: cfg.maxPointsPerCentroid, minPointsPerCentroid: cfg.minPointsPerCentroid,
      kmeansImpl: cfg.kmeansImpl, kmeansPrune: cfg.kmeansPrune, reuseCentroids: cfg.reuseCentroids, ...(cfg.centroids ? { centroids: cfg.centroids } : {}),
    }, { keepAssignment: true });
    const assigned: Record<string, string> = {};
    if (t.assigned) {
      ensureOutputDir(planPaths.parts(dir, 'train'));
      for (const [name, data] of Object.entries(ASSIGNED)) {
        assigned[name] = planPaths.part(dir, 'train', name, 0);
        writeNpy(assigned[name], t.assigned[data]);
      }
    }
    const embeddings: EffectiveLayout = { path: emb.path, format: emb.format, dtype: emb.dtype, n: emb.n, d: emb.d, offset: emb.offset, ...(emb.shards ? { shards: emb.shards } : {}) };
    return {
      outputs: { centroids: outputs.centroids(dir), ...assigned },
      info: {
        embeddings, embeddingsStamp: embeddingsStamp(emb), centroidsFrom: t.centroidsFrom, objective: t.objective, iterations: t.iterations,
        searchedRows: t.searchedRows, prunedRows: t.prunedRows, partialRows: t.partialRows, searchedColumns: t.searchedColumns,
        rescoredRows: t.rescoredRows, filterCheckedRows: t.filterCheckedRows,
        ...(t.filter ? { filter: t.filter } : {}), ...(t.backend ? { backend: t.backend } : {}),
      },
    };
  } finally {
    emb.close();
  }
}

async function assign(plan: Plan, i: number, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const [b, e] = stageOf(plan, 'assign').ranges![i]!;
  const lay = effectiveLayout(plan);
  const centroids = readCentroids(plan);
  const emb = openRows(lay, b, e);
  const so = stepOptions(cfg, o);
  try {
    // Step 2's assignment and step 3's ranking key of the task's rows, by the steps' own functions.
    // The training rows of this range keep the assignment training ended with, as in a single run.
    const known = assignedInRange(plan, b, e);
    const { nearest, dist, backend, rescoredRows, filter, filterCheckedRows } = await assignRows(
      emb, e - b, centroids, { ...so, k: plan.k, spherical: cfg.spherical, kmeansImpl: cfg.kmeansImpl }, 'assign', known,
    );
    const key = await rankKeys(nearest, dist, { ...so, simMetric: cfg.simMetric, spherical: cfg.spherical, centroids, k: plan.k, rows: emb }, 'assign:cosine');
    ensureOutputDir(planPaths.parts(dir, 'assign'));
    const out = { nearest: planPaths.part(dir, 'assign', 'nearest', i), dist: planPaths.part(dir, 'assign', 'dist', i), key: planPaths.part(dir, 'assign', 'key', i) };
    writeNpy(out.nearest, nearest);
    writeNpy(out.dist, dist);
    writeNpy(out.key, key);
    return { outputs: out, info: { rows: [b, e], backend, rescoredRows, filter, filterCheckedRows } };
  } finally {
    emb.close();
  }
}

/** Concatenates one part array over all tasks of a stage. */
function concatParts<T extends BigInt64Array | Float32Array | Float64Array>(plan: Plan, stage: Stage, name: string, make: (n: number) => T): T {
  const st = stageOf(plan, stage);
  const parts: T[] = [];
  let n = 0;
  for (let i = 0; i < st.tasks; i++) {
    const p = planPaths.part(plan.outputDir, stage, name, i);
    if (!existsSync(p)) throw new InputError(`${p} not found: ${stage} task ${i} has not completed`, { file: p });
    verifiedOutput(plan, stage, i, name);
    const a = readNpy(p).data as T;
    parts.push(a);
    n += a.length;
  }
  const out = make(n);
  let at = 0;
  for (const a of parts) {
    (out as unknown as { set(a: T, at: number): void }).set(a, at);
    at += a.length;
  }
  return out;
}

async function group(plan: Plan, g: number, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const [c0, c1] = stageOf(plan, 'group').ranges![g]!;
  const nearest = concatParts(plan, 'assign', 'nearest', (n) => new BigInt64Array(n));
  const key = concatParts(plan, 'assign', 'key', (n) => new Float32Array(n));
  // Step 3 for the task's clusters, by the step's own function.
  const { order, offsets, distance } = await rankClusterRange(nearest, key, plan.k, c0, c1, cfg.keepHard, o.threads ?? cfg.threads);
  const sizes = new BigInt64Array(c1 - c0);
  for (let c = 0; c < c1 - c0; c++) sizes[c] = offsets[c + 1]! - offsets[c]!;
  ensureOutputDir(planPaths.parts(dir, 'group'));
  const out = { order: planPaths.part(dir, 'group', 'order', g), distance: planPaths.part(dir, 'group', 'distance', g), sizes: planPaths.part(dir, 'group', 'sizes', g) };
  writeNpy(out.order, order);
  writeNpy(out.distance, distance);
  writeNpy(out.sizes, sizes);
  o.log?.(`group ${g}: clusters [${c0}, ${c1}), ${order.length} rows`);
  return { outputs: out, info: { clusters: [c0, c1], rows: order.length } };
}

/** Cluster sizes and offsets over all groups. */
function clusterOffsets(plan: Plan): BigInt64Array {
  const sizes = concatParts(plan, 'group', 'sizes', (n) => new BigInt64Array(n));
  if (sizes.length !== plan.k) throw new InputError(`the group parts hold ${sizes.length} cluster sizes, expected k = ${plan.k}`);
  const offsets = new BigInt64Array(plan.k + 1);
  for (let c = 0; c < plan.k; c++) offsets[c + 1] = offsets[c]! + sizes[c]!;
  return offsets;
}

/** The step-3 order of clusters [ca, cb) (positions offsets[ca] .. offsets[cb]), read from the group parts that hold them. */
function orderOfClusters(plan: Plan, offsets: BigInt64Array, ca: number, cb: number): BigInt64Array {
  const st = stageOf(plan, 'group');
  const P0 = Number(offsets[ca]!);
  const out = new BigInt64Array(Number(offsets[cb]!) - P0);
  for (let g = 0; g < st.tasks; g++) {
    const [g0, g1] = st.ranges![g]!;
    if (g1 <= ca || g0 >= cb) continue;
    const part = readNpy(verifiedOutput(plan, 'group', g, 'order')).data as BigInt64Array;
    const base = Number(offsets[g0]!);
    const from = Math.max(ca, g0);
    const to = Math.min(cb, g1);
    const a = Number(offsets[from]!);
    const b = Number(offsets[to]!);
    out.set(part.subarray(a - base, b - base), a - P0);
  }
  return out;
}

/**
 * Whether dedup tasks split large clusters into row blocks: only where the max similarity runs on
 * the CPU, whose block kernel gives the whole-cluster kernel's bits (the CUDA kernel has no block
 * entry: under CUDA a cluster stays whole in one task, so the bytes stay those of a single run).
 */
export function splitsClusters(plan: Plan): boolean {
  return engineFor(plan.config.device).device === 'cpu';
}

/** The dedup partition of this plan (every dedup task computes the same one). */
export function planDedup(plan: Plan, offsets: BigInt64Array, split = splitsClusters(plan)): DedupItem[] {
  const sizes = new Float64Array(plan.k);
  for (let c = 0; c < plan.k; c++) sizes[c] = Number(offsets[c + 1]! - offsets[c]!);
  const addon = loadNative();
  return dedupItems(sizes, stageOf(plan, 'dedup').tasks, (n) => (split ? addon.maxSimLayout({ n, d: plan.d }) : { split: false, width: n }));
}

async function dedup(plan: Plan, t: number, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const offsets = clusterOffsets(plan);
  const split = splitsClusters(plan);
  const items = planDedup(plan, offsets, split).filter((it) => it.task === t);
  ensureOutputDir(planPaths.parts(dir, 'dedup'));
  const out = { M: planPaths.part(dir, 'dedup', 'M', t), row: planPaths.part(dir, 'dedup', 'row', t) };
  // The counts of step 4 (summed by the extract task); the filter is that of whole clusters on this
  // task's backend, and what the CPU's would be when the task ran only blocks of split clusters.
  const stats = { ...noMaxSimCounts(), filter: split ? loadNative().cpuFilter({ d: plan.d }) : 'fp32', blocks: 0 };
  if (items.length === 0) {
    writeNpy(out.M, new Float64Array(0));
    writeNpy(out.row, new BigInt64Array(0));
    return { outputs: out, info: { positions: [0, 0], items: 0, split, ...stats } };
  }
  const first = items[0]!;
  const last = items[items.length - 1]!;
  const ca = first.cluster;
  const cb = last.cluster + 1;
  const P0 = Number(offsets[ca]!);
  const q0 = P0 + first.j0;
  const q1 = Number(offsets[last.cluster]!) + last.j1;
  // The keep order of the task's clusters: offsets over all k clusters, empty outside [ca, cb), so
  // that each cluster keeps its own index (the random order is seeded by (seed, cluster)).
  const order = orderOfClusters(plan, offsets, ca, cb);
  const local = new BigInt64Array(plan.k + 1);
  for (let c = 0; c <= plan.k; c++) {
    const v = Number(offsets[Math.min(Math.max(c, ca), cb)]!) - P0;
    local[c] = BigInt(v);
  }
  const { keepOrder } = await keepOrderOf(order, local, cfg.whichToKeep as WhichToKeep, cfg.seed, o.threads ?? cfg.threads, rankValuesOf(plan.config));
  const M = new Float64Array(q1 - q0);
  const Mrow = new BigInt64Array(q1 - q0);
  const lay = effectiveLayout(plan);
  const emb = openRows(lay, 0, lay.n);
  const so = { ...stepOptions(cfg, o), epsList: cfg.epsList };
  let done = 0;
  const total = q1 - q0;
  try {
    // Step 4's M by the step's own functions: runs of whole clusters together, blocks of split clusters one by one.
    for (let a = 0; a < items.length; ) {
      const it = items[a]!;
      const base = Number(offsets[it.cluster]!);
      if (it.j0 === 0 && it.j1 === it.n) {
        let b = a;
        while (b + 1 < items.length && items[b + 1]!.j0 === 0 && items[b + 1]!.j1 === items[b + 1]!.n) b++;
        const cs = it.cluster;
        const ce = items[b]!.cluster + 1;
        const s = Number(offsets[cs]!);
        const e = Number(offsets[ce]!);
        const subOffsets = new BigInt64Array(ce - cs + 1);
        for (let c = cs; c <= ce; c++) subOffsets[c - cs] = offsets[c]! - BigInt(s);
        const st = await maxSimilarityOfClusters(emb, keepOrder.subarray(s - P0, e - P0), subOffsets, M.subarray(s - q0, e - q0), Mrow.subarray(s - q0, e - q0), so, { done, total });
        if (stats.members === 0) noteBackend(o.log, 'max similarity', st);
        addMaxSimCounts(stats, st, true);
        done += e - s;
        a = b + 1;
      } else {
        const rows = keepOrder.slice(base - P0, base - P0 + it.n);
        const st = await maxSimilarityOfBlock(emb, rows, it.j0, it.j1, M.subarray(base + it.j0 - q0, base + it.j1 - q0), Mrow.subarray(base + it.j0 - q0, base + it.j1 - q0), so, { done, total });
        o.log?.(`cluster ${it.cluster} (${it.n} members): block [${it.j0}, ${it.j1})`);
        addMaxSimCounts(stats, st, false);
        stats.blocks++;
        done += it.j1 - it.j0;
        a++;
      }
      o.onProgress?.({ stage: 'dedup', done, total });
    }
  } finally {
    emb.close();
  }
  writeNpy(out.M, M);
  writeNpy(out.row, Mrow);
  o.log?.(`dedup ${t}: clusters [${ca}, ${cb}), positions [${q0}, ${q1}), ${stats.blocks} blocks of split clusters, ${stats.rechecked} re-checked in float64`);
  return { outputs: out, info: { positions: [q0, q1], items: items.length, split, ...stats } };
}

/** The sum over a stage's tasks of a number each recorded in its info. */
function sumInfo(plan: Plan, stage: Stage, field: string): number {
  let s = 0;
  for (let i = 0; i < stageOf(plan, stage).tasks; i++) s += Number(readState(plan, stage, i)?.info?.[field] ?? 0);
  return s;
}

/** The filter a stage's tasks recorded: one name, or the distinct names joined by '+' when tasks ran on different machines. */
function infoFilter(plan: Plan, stage: Stage): CpuFilter {
  const names = new Set<string>();
  for (let i = 0; i < stageOf(plan, stage).tasks; i++) {
    const f = readState(plan, stage, i)?.info?.filter;
    if (typeof f === 'string') names.add(f);
  }
  return ([...names].sort().join('+') || 'fp32') as CpuFilter;
}

/** M's precision over the dedup tasks: the weakest any task reported. */
function infoPrecision(plan: Plan): MPrecision {
  const all = noMaxSimCounts();
  for (let i = 0; i < stageOf(plan, 'dedup').tasks; i++) addMaxSimCounts(all, { mPrecision: readState(plan, 'dedup', i)?.info?.mPrecision as MPrecision | undefined }, false);
  return all.mPrecision;
}

/** The seconds of a stage's tasks, summed. */
function stageSeconds(plan: Plan, stage: Stage): number {
  let s = 0;
  for (let i = 0; i < stageOf(plan, stage).tasks; i++) s += readState(plan, stage, i)?.seconds ?? 0;
  return s;
}

/**
 * The final files, as a single run commits them and by the same commit functions: step 2's
 * assignment, step 3's order (and the original's sorted clusters when exported), step 4's keep
 * order and M, step 5's lists, the summary and the manifest.
 */
async function extract(plan: Plan, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const log = o.log;
  const threads = o.threads ?? cfg.threads;
  // Step 2: the centroids the assign tasks used (the train task's, of the plan's k), and the
  // embeddings they read: only then is the cluster step committed with them.
  const nearest = concatParts(plan, 'assign', 'nearest', (n) => new BigInt64Array(n));
  const dist = concatParts(plan, 'assign', 'dist', (n) => new Float32Array(n));
  if (nearest.length !== plan.n) throw new InputError(`the assign parts hold ${nearest.length} rows, expected ${plan.n}`);
  readCentroids(plan);
  const lay = effectiveLayout(plan);
  const trained = readState(plan, 'train', 0)?.info ?? {};
  commitCluster(dir, lay, cfg.spherical, plan.k, nearest, dist, {
    centroidsFrom: trained.centroidsFrom, objective: trained.objective, iterations: trained.iterations, searchedRows: trained.searchedRows, prunedRows: trained.prunedRows,
    partialRows: trained.partialRows, searchedColumns: trained.searchedColumns,
    rescoredRows: { train: trained.rescoredRows ?? 0, assign: sumInfo(plan, 'assign', 'rescoredRows') },
    filter: { ...(trained.filter ? { train: trained.filter } : {}), assign: infoFilter(plan, 'assign') },
    filterCheckedRows: { train: trained.filterCheckedRows ?? 0, assign: sumInfo(plan, 'assign', 'filterCheckedRows') }, impl: cfg.kmeansImpl,
    trainSeconds: stageSeconds(plan, 'train'), assignSeconds: stageSeconds(plan, 'assign'),
    k: plan.k, niter: cfg.niter, seed: cfg.seed, spherical: cfg.spherical, maxPointsPerCentroid: cfg.maxPointsPerCentroid, minPointsPerCentroid: cfg.minPointsPerCentroid,
  });
  // Step 3.
  const offsets = clusterOffsets(plan);
  const order = concatParts(plan, 'group', 'order', (n) => new BigInt64Array(n));
  const distance = concatParts(plan, 'group', 'distance', (n) => new Float32Array(n));
  const ranked = { order, offsets, distance };
  writeSortFiles(dir, ranked);
  const ids = resolveIds(plan.config, undefined, log);
  const exported = cfg.exportSortedClusters ? exportSortedClusters(cfg.sortedClustersDir ?? outputs.sortedClusters(dir), ranked, ids, o.onProgress) : undefined;
  commitSort(dir, cfg, lay, { seconds: stageSeconds(plan, 'group'), ...(exported ? { exported } : {}) });
  // Step 4: the keep order of all clusters, and M from the dedup parts, position by position.
  const rank = rankValuesOf(plan.config);
  const { keepOrder, keepIndex } = await keepOrderOf(order, offsets, cfg.whichToKeep as WhichToKeep, cfg.seed, threads, rank);
  const M = new Float64Array(plan.n);
  const Mrow = new BigInt64Array(plan.n);
  const covered = new Uint8Array(plan.n);
  const dst = stageOf(plan, 'dedup');
  const splits = new Set<boolean>();
  for (let t = 0; t < dst.tasks; t++) {
    const s = readState(plan, 'dedup', t);
    splits.add(s?.info?.split as boolean);
    if (splits.size > 1)
      throw new InputError('the dedup tasks ran on different backends (some split large clusters on the CPU, some kept them whole for CUDA), so their shares differ: set `device` to cpu or cuda and rerun the dedup stage (delete semdedup/plan/state/dedup.*.json)');
    const [q0, q1] = (s?.info?.positions as [number, number] | undefined) ?? [0, 0];
    const pm = readNpy(verifiedOutput(plan, 'dedup', t, 'M')).data as Float64Array;
    const pr = readNpy(verifiedOutput(plan, 'dedup', t, 'row')).data as BigInt64Array;
    if (pm.length !== q1 - q0 || pr.length !== q1 - q0) throw new InputError(`${planPaths.part(dir, 'dedup', 'M', t)}: ${pm.length} values, its task recorded positions [${q0}, ${q1})`);
    if (q1 > q0 && covered.subarray(q0, q1).some((v) => v !== 0)) throw new InputError(`dedup task ${t}: positions [${q0}, ${q1}) overlap another task's`);
    M.set(pm, q0);
    Mrow.set(pr, q0);
    covered.fill(1, q0, q1);
  }
  const gap = covered.indexOf(0);
  if (gap >= 0) throw new InputError(`keep-order position ${gap} was computed by no dedup task`);
  // The exact-duplicates pass of step 4 (exact_duplicates), in the keep order, as a single run makes it.
  let exact: { emb: Embeddings; r: ExactDuplicatesResult } | undefined;
  if (cfg.exactDuplicates) {
    const emb = openLayout(lay);
    try {
      exact = { emb, r: await findExactDuplicates({ ...stepOptions(cfg, o), embeddings: emb, order: keepOrder, outputDir: dir }) };
    } finally {
      emb.close();
    }
  }
  const spec = { whichToKeep: cfg.whichToKeep as WhichToKeep, seed: cfg.seed, epsList: cfg.epsList, rank };
  writeDedupFiles(dir, { keepOrder, keepIndex, M, Mrow });
  const dedupStats = {
    members: sumInfo(plan, 'dedup', 'members'), usefulFlops: sumInfo(plan, 'dedup', 'usefulFlops'), filter: infoFilter(plan, 'dedup'),
    copies: sumInfo(plan, 'dedup', 'copies'), filterChecked: sumInfo(plan, 'dedup', 'filterChecked'), rechecked: sumInfo(plan, 'dedup', 'rechecked'), rescanned: sumInfo(plan, 'dedup', 'rescanned'),
    mPrecision: infoPrecision(plan),
  };
  commitDedup(dir, lay, spec, { ...dedupStats, seconds: stageSeconds(plan, 'dedup') });
  if (exact) commitExact(dir, exact.emb, exact.r, true);
  // Step 5, as a single run does it.
  const t5 = performance.now();
  const lists = cfg.epsList.map((e) => outputs.keptList(dir, e));
  const extracted = await extractPrunedDataAll({
    outputDir: dir, epsList: cfg.epsList, outputs: lists, data: { keepOrder, M }, ...(ids ? { ids } : {}),
    order: cfg.keptOrder, fileFormat: cfg.keptFileFormat === 'original' ? 'original' : 'posix',
    threads, ...(log ? { log } : {}), ...(o.signal ? { signal: o.signal } : {}),
  });
  const eps = extracted.map((r) => r.summary);
  const seconds: Record<string, number> = {
    cluster: stageSeconds(plan, 'train') + stageSeconds(plan, 'assign'), sort: stageSeconds(plan, 'group'), dedup: stageSeconds(plan, 'dedup'),
    extract: (performance.now() - t5) / 1000,
  };
  seconds.total = seconds.cluster! + seconds.sort! + seconds.dedup! + seconds.extract!;
  writeSummary(dir, { n: plan.n, clusters: plan.k, whichToKeep: cfg.whichToKeep as WhichToKeep, eps, dedupStats, seconds });
  commitExtract(dir, cfg.epsList, ids);
  commitConfig(dir, plan.config, { path: planPaths.plan(dir), id: plan.id, tasks: Object.fromEntries(plan.stages.map((s) => [s.name, s.tasks])) });
  sweepStale(dir, cfg.sortedClustersDir ?? outputs.sortedClusters(dir));
  const files: Record<string, string> = Object.fromEntries(cfg.epsList.map((e, i) => [`kept_eps${e}`, lists[i]!]));
  return {
    outputs: {
      nearest: outputs.nearest(dir), dist: outputs.dist(dir), order: outputs.order(dir), offsets: outputs.offsets(dir), keepOrder: outputs.keepOrder(dir),
      M: outputs.M(dir), Mrow: outputs.Marg(dir), ...files,
    },
    info: { eps },
  };
}

/**
 * Runs task `index` of `stage`: nothing when it is already complete; else it records itself as
 * running, does its work and records done (with its outputs) or failed (with the error).
 */
export async function runTask(plan: Plan, stage: Stage, index: number, o: TaskOptions = {}): Promise<{ skipped: boolean; state: TaskState }> {
  const st = stageOf(plan, stage);
  if (!Number.isInteger(index) || index < 0 || index >= st.tasks)
    throw new SemDedupError('ERR_CONFIG', `stage ${stage} has tasks 0..${st.tasks - 1}; there is no task ${index}`, { key: 'index' });
  if (isComplete(plan, stage, index)) {
    o.log?.(`${stage} ${index}: already complete`);
    return { skipped: true, state: readState(plan, stage, index)! };
  }
  mkdirSync(planPaths.stateDir(plan.outputDir), { recursive: true });
  // Every task holds the folder's lock shared with its executor and the other tasks of the run: a
  // single run (which needs it exclusive) refuses while any of them works, and they refuse while
  // a single run works.
  const lock = lockOutputDir(plan.outputDir, [], { shared: true });
  const state = newState(plan, stage, index, o.logFile);
  writeState(plan, state);
  const t0 = performance.now();
  const onTerm = (sig: NodeJS.Signals) => {
    writeState(plan, { ...state, state: 'failed', finishedAt: new Date().toISOString(), error: `killed by ${sig}` });
    process.exit(sig === 'SIGTERM' ? 143 : 130);
  };
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onTerm);
  try {
    const r =
      stage === 'train' ? await train(plan, o)
      : stage === 'assign' ? await assign(plan, index, o)
      : stage === 'group' ? await group(plan, index, o)
      : stage === 'dedup' ? await dedup(plan, index, o)
      : await extract(plan, o);
    const stamps = Object.fromEntries(Object.entries(r.outputs).map(([k, p]) => [k, outputStamp(p)]));
    const done: TaskState = { ...state, state: 'done', finishedAt: new Date().toISOString(), seconds: (performance.now() - t0) / 1000, outputs: stamps, ...(r.info ? { info: r.info } : {}) };
    writeState(plan, done);
    return { skipped: false, state: done };
  } catch (e) {
    writeState(plan, { ...state, state: 'failed', finishedAt: new Date().toISOString(), seconds: (performance.now() - t0) / 1000, error: (e as Error).message });
    throw e;
  } finally {
    process.removeListener('SIGTERM', onTerm);
    process.removeListener('SIGINT', onTerm);
    lock?.release();
  }
}
