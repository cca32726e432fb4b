// The tasks of a plan (`semdedup task <stage> <index> --plan <manifest>`). Each reads and writes
// files under the output folder only, and a task that finds its outputs complete does nothing:
//   train    the embeddings check (and normalised copy) and k-means on the seeded sample (1 task)
//   assign   the nearest centroid and step 3's ranking key of a row range (each row's exact nearest
//            centroid and float64 value depend on that row alone, so the bits are the single run's)
//   group    step 3 for a range of clusters: their rows gathered and ranked
//   dedup    step 4's M for a share of the clusters balanced by cost, large clusters in row blocks
//   extract  the final files: the single-process run's, assembled from the parts, and the ids per eps
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, SemDedupError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { atomicWriteFile } from '../io/atomic.js';
import { outputs } from '../layout.js';
import { loadNative, nativeInfo, type NativeEmbeddings, type MaxSimStats } from '../native.js';
import { embeddingsFiles, embeddingsInputs, embeddingsStamp, openRowRange, type EmbeddingsLayout } from '../embeddings.js';
import { rankValuesOf } from '../inputs.js';
import { commitExtract, embeddingsSpecOf, resolveIds, runSort } from '../pipeline.js';
import { extractPrunedDataAll } from '../steps/extract.js';
import { prepareEmbeddings } from '../steps/check.js';
import { keepOrderOf, summarize, type WhichToKeep } from '../steps/dedup.js';
import { ALGORITHM_VERSION, ensureOutputDir, noteBackend, runNative, type CommonOptions } from '../steps/common.js';
import { withDefaults, toManifest, type PartialResolved } from '../config.js';
import { matches, readManifest, recordStep, stamp, stepIsCurrent, sweepStale, writeManifest, type FileStamp } from '../manifest.js';
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

/** The embeddings the tasks read: the input, or the normalised copy the train task made. */
function effectiveLayout(plan: Plan): EffectiveLayout {
  const s = readState(plan, 'train', 0);
  const e = s?.info?.embeddings as EffectiveLayout | undefined;
  const where = planPaths.state(plan.outputDir, 'train', 0);
  if (!s || s.state !== 'done' || !e) throw new InputError(`${where}: the train task has not completed`, { file: where });
  // The rows the train task checked and clustered, unchanged since.
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

async function train(plan: Plan, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const threads = o.threads ?? cfg.threads;
  const emb = await prepareEmbeddings(embeddingsSpecOf(plan.config), { ...o, threads, device: cfg.device, outputDir: dir, normalize: cfg.normalize });
  try {
    const k = plan.k;
    const centroidsPath = outputs.centroids(dir);
    const check = (data: Float32Array, shape: number[], path: string) => {
      if (shape.length !== 2 || shape[0] !== k || shape[1] !== emb.d)
        throw new InputError(`${path}: centroids have shape (${shape.join(', ')}), expected (k=${k}, D=${emb.d})`, { file: path, key: 'k' });
      return data;
    };
    let from: string;
    // As cluster.ts: centroids are committed (step 'train') with what they came from, and reused
    // only when that is unchanged.
    const params = { k, niter: cfg.niter, seed: cfg.seed, spherical: cfg.spherical, maxPointsPerCentroid: cfg.maxPointsPerCentroid, minPointsPerCentroid: cfg.minPointsPerCentroid };
    const trainParams = cfg.centroids ? { given: stamp(cfg.centroids), k, d: emb.d, algorithm: ALGORITHM_VERSION } : { ...params, impl: cfg.kmeansImpl, d: emb.d, algorithm: ALGORITHM_VERSION };
    const trainInputs: Record<string, string> = cfg.centroids ? {} : embeddingsInputs(emb);
    if (cfg.centroids) {
      const { header, data } = readNpy(cfg.centroids);
      if (!(data instanceof Float32Array)) throw new InputError(`${cfg.centroids}: the given centroids must be float32, found ${header.descr}`, { file: cfg.centroids });
      writeNpy(centroidsPath, check(data, header.shape, cfg.centroids), { shape: [k, emb.d] });
      recordStep(dir, 'train', trainParams, trainInputs, { centroids: centroidsPath });
      from = 'given';
    } else if (cfg.reuseCentroids && existsSync(centroidsPath) && stepIsCurrent(dir, 'train', trainParams, trainInputs)) {
      const { header, data } = readNpy(centroidsPath);
      check(data as Float32Array, header.shape, centroidsPath);
      from = 'reused';
      o.log?.(`centroids: reusing ${centroidsPath}`);
    } else {
      o.log?.(`k-means: k=${k}, niter=${cfg.niter}, seed=${cfg.seed}, spherical=${cfg.spherical}, N=${emb.n}, D=${emb.d}`);
      const r = await runNative(o, 'train', (p, token) =>
        loadNative().trainKmeans(emb.native, { ...params, threads, device: cfg.device, impl: cfg.kmeansImpl, prune: cfg.kmeansPrune }, p, token),
      );
      noteBackend(o.log, 'k-means training', r);
      writeNpy(centroidsPath, r.centroids, { shape: [k, emb.d] });
      recordStep(dir, 'train', trainParams, trainInputs, { centroids: centroidsPath }, { objective: r.objective, iterations: r.iterations, searchedRows: r.searchedRows, prunedRows: r.prunedRows, rescoredRows: r.rescoredRows, backend: r.backend, plan: plan.id });
      from = 'trained';
    }
    const embeddings: EffectiveLayout = { path: emb.path, format: emb.format, dtype: emb.dtype, n: emb.n, d: emb.d, offset: emb.offset, ...(emb.shards ? { shards: emb.shards } : {}) };
    return { outputs: { centroids: centroidsPath }, info: { embeddings, embeddingsStamp: embeddingsStamp(emb), centroidsFrom: from } };
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
  const addon = loadNative();
  const threads = o.threads ?? cfg.threads;
  try {
    const n = e - b;
    const nearest = new BigInt64Array(n);
    const dist = new Float32Array(n);
    const ran = await runNative(o, 'assign', (p, token) =>
      addon.assignNearest(emb, centroids, plan.k, cfg.spherical, nearest, dist, { threads, device: cfg.device, impl: cfg.kmeansImpl }, p, token),
    );
    noteBackend(o.log, 'assignment', ran);
    // Step 3's ranking key of each row, as sort.ts computes it.
    const key = new Float32Array(n);
    if (cfg.simMetric === 'l2') key.set(dist);
    else if (cfg.spherical) for (let r = 0; r < n; r++) key[r] = Math.fround(1 - dist[r]!);
    else {
      const cos = new Float32Array(n);
      await runNative(o, 'assign:cosine', (_p, token) => addon.cosineToCentroid(emb, centroids, plan.k, nearest, cos, { threads }, token));
      for (let r = 0; r < n; r++) key[r] = Math.fround(1 - cos[r]!);
    }
    ensureOutputDir(planPaths.parts(dir, 'assign'));
    const out = { nearest: planPaths.part(dir, 'assign', 'nearest', i), dist: planPaths.part(dir, 'assign', 'dist', i), key: planPaths.part(dir, 'assign', 'key', i) };
    writeNpy(out.nearest, nearest);
    writeNpy(out.dist, dist);
    writeNpy(out.key, key);
    return { outputs: out, info: { rows: [b, e], backend: ran.backend, rescoredRows: ran.rescoredRows } };
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
  let m = 0;
  const lo = BigInt(c0);
  const hi = BigInt(c1);
  for (let r = 0; r < nearest.length; r++) if (nearest[r]! >= lo && nearest[r]! < hi) m++;
  const rows = new BigInt64Array(m);
  const subNearest = new BigInt64Array(m);
  const subKey = new Float32Array(m);
  let j = 0;
  for (let r = 0; r < nearest.length; r++) {
    const c = nearest[r]!;
    if (c >= lo && c < hi) {
      rows[j] = BigInt(r);
      subNearest[j] = c - lo;
      subKey[j] = key[r]!;
      j++;
    }
  }
  const subOrder = new BigInt64Array(m);
  const subOffsets = new BigInt64Array(c1 - c0 + 1);
  // Rows in ascending order, so the stable ranking breaks ties by row as the single run does.
  await loadNative().rankClusters(subNearest, subKey, c1 - c0, cfg.keepHard, subOrder, subOffsets);
  const order = new BigInt64Array(m);
  const distance = new Float32Array(m);
  for (let p = 0; p < m; p++) {
    const q = Number(subOrder[p]!);
    order[p] = rows[q]!;
    distance[p] = subKey[q]!;
  }
  const sizes = new BigInt64Array(c1 - c0);
  for (let c = 0; c < c1 - c0; c++) sizes[c] = subOffsets[c + 1]! - subOffsets[c]!;
  ensureOutputDir(planPaths.parts(dir, 'group'));
  const out = { order: planPaths.part(dir, 'group', 'order', g), distance: planPaths.part(dir, 'group', 'distance', g), sizes: planPaths.part(dir, 'group', 'sizes', g) };
  writeNpy(out.order, order);
  writeNpy(out.distance, distance);
  writeNpy(out.sizes, sizes);
  o.log?.(`group ${g}: clusters [${c0}, ${c1}), ${m} rows`);
  return { outputs: out, info: { clusters: [c0, c1], rows: m } };
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
  const device = plan.config.device ?? 'auto';
  return device === 'cpu' || (device === 'auto' && !nativeInfo().cuda.available);
}

/** The dedup partition of this plan (every dedup task computes the same one). */
export function planDedup(plan: Plan, offsets: BigInt64Array, split = splitsClusters(plan)): DedupItem[] {
  const sizes = new Float64Array(plan.k);
  for (let c = 0; c < plan.k; c++) sizes[c] = Number(offsets[c + 1]! - offsets[c]!);
  const addon = loadNative();
  return dedupItems(sizes, stageOf(plan, 'dedup').tasks, (n) => (split ? addon.maxSimLayout(n, plan.d) : { split: false, width: n }));
}

async function dedup(plan: Plan, t: number, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const offsets = clusterOffsets(plan);
  const split = splitsClusters(plan);
  const items = planDedup(plan, offsets, split).filter((it) => it.task === t);
  ensureOutputDir(planPaths.parts(dir, 'dedup'));
  const out = { M: planPaths.part(dir, 'dedup', 'M', t), row: planPaths.part(dir, 'dedup', 'row', t) };
  if (items.length === 0) {
    writeNpy(out.M, new Float64Array(0));
    writeNpy(out.row, new BigInt64Array(0));
    return { outputs: out, info: { positions: [0, 0], items: 0, split } };
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
  const addon = loadNative();
  const threads = o.threads ?? cfg.threads;
  const thresholds = cfg.epsList.map((e) => 1 - e);
  const stats = { members: 0, rechecked: 0, blocks: 0, usefulFlops: 0 };
  let done = 0;
  const total = q1 - q0;
  try {
    // Runs of whole clusters go to the kernel together; blocks of split clusters one by one.
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
        const st: MaxSimStats = await runNative(o, 'dedup', (p, token) =>
          addon.maxSimilarity(emb, keepOrder.subarray(s - P0, e - P0), subOffsets, M.subarray(s - q0, e - q0), Mrow.subarray(s - q0, e - q0),
            { thresholds, threads, device: cfg.device }, (d2, t2) => p(done + (t2 ? ((e - s) * d2) / t2 : 0), total), token),
        );
        if (stats.members === 0) noteBackend(o.log, 'max similarity', st);
        stats.members += st.members;
        stats.rechecked += st.rechecked;
        stats.usefulFlops += st.usefulFlops;
        done += e - s;
        a = b + 1;
      } else {
        const rows = keepOrder.slice(base - P0, base - P0 + it.n);
        const st = await runNative(o, 'dedup:block', (p, token) =>
          addon.maxSimilarityBlock(emb, rows, it.j0, it.j1, M.subarray(base + it.j0 - q0, base + it.j1 - q0), Mrow.subarray(base + it.j0 - q0, base + it.j1 - q0),
            { thresholds, threads }, (d2, t2) => p(done + (t2 ? ((it.j1 - it.j0) * d2) / t2 : 0), total), token),
        );
        o.log?.(`cluster ${it.cluster} (${it.n} members): block [${it.j0}, ${it.j1})`);
        stats.members += st.members;
        stats.rechecked += st.rechecked;
        stats.usefulFlops += st.usefulFlops;
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

async function extract(plan: Plan, o: TaskOptions): Promise<TaskResult> {
  const cfg = cfgOf(plan);
  const dir = plan.outputDir;
  const log = o.log;
  // Step 2's files.
  const nearest = concatParts(plan, 'assign', 'nearest', (n) => new BigInt64Array(n));
  const dist = concatParts(plan, 'assign', 'dist', (n) => new Float32Array(n));
  if (nearest.length !== plan.n) throw new InputError(`the assign parts hold ${nearest.length} rows, expected ${plan.n}`);
  // The centroids the assign tasks used (the train task's, of the plan's k), and the embeddings
  // they read: only then is the cluster step committed with them.
  readCentroids(plan);
  const lay = effectiveLayout(plan);
  writeNpy(outputs.nearest(dir), nearest);
  writeNpy(outputs.dist(dir), dist);
  recordStep(dir, 'cluster', { spherical: cfg.spherical, k: plan.k, d: plan.d, n: plan.n, algorithm: ALGORITHM_VERSION }, { ...embeddingsInputs(lay), centroids: outputs.centroids(dir) },
    { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) }, { plan: plan.id });
  // Step 3's.
  const offsets = clusterOffsets(plan);
  const order = concatParts(plan, 'group', 'order', (n) => new BigInt64Array(n));
  const distance = concatParts(plan, 'group', 'distance', (n) => new Float32Array(n));
  ensureOutputDir(outputs.ours(dir));
  writeNpy(outputs.order(dir), order);
  writeNpy(outputs.offsets(dir), offsets);
  writeNpy(outputs.sortKey(dir), distance);
  const sortInputs: Record<string, string> = { centroids: outputs.centroids(dir), nearest: outputs.nearest(dir), dist: outputs.dist(dir) };
  if (cfg.simMetric === 'cosine' && !cfg.spherical) Object.assign(sortInputs, embeddingsInputs(lay));
  recordStep(dir, 'sort', { simMetric: cfg.simMetric, keepHard: cfg.keepHard, spherical: cfg.spherical, algorithm: ALGORITHM_VERSION }, sortInputs,
    { order: outputs.order(dir), offsets: outputs.offsets(dir), sortKey: outputs.sortKey(dir) }, { plan: plan.id });
  // Step 4's: the keep order of all clusters, and M from the dedup parts, position by position.
  const rank = rankValuesOf(plan.config);
  const { keepOrder, keepIndex } = await keepOrderOf(order, offsets, cfg.whichToKeep as WhichToKeep, cfg.seed, o.threads ?? cfg.threads, rank);
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
  writeNpy(outputs.keepOrder(dir), keepOrder);
  writeNpy(outputs.keepIndex(dir), keepIndex);
  writeNpy(outputs.M(dir), M);
  writeNpy(outputs.Marg(dir), Mrow);
  recordStep(dir, 'dedup', { whichToKeep: cfg.whichToKeep, seed: cfg.seed, epsList: cfg.epsList, algorithm: ALGORITHM_VERSION, ...(rank ? { rankBy: { column: rank.column, order: rank.order } } : {}) },
    { ...embeddingsInputs(lay), order: outputs.order(dir), offsets: outputs.offsets(dir), ...(rank?.file ? { rank: rank.file } : {}) },
    { M: outputs.M(dir), keepOrder: outputs.keepOrder(dir), keepIndex: outputs.keepIndex(dir), Mrow: outputs.Marg(dir) }, { plan: plan.id });
  if (cfg.exportSortedClusters) await runSort(plan.config, { ...o, ...(log ? { log } : {}) }); // the same step-3 files, and the original's per-cluster files
  // Step 5, as `semdedup run` does it.
  const ids = resolveIds(plan.config, undefined, log);
  const texts = cfg.epsList.map((e) => join(dir, `kept_eps${e}.txt`));
  const extracted = await extractPrunedDataAll({
    outputDir: dir, epsList: cfg.epsList, outputs: texts, data: { keepOrder, M }, ...(ids ? { ids } : {}),
    order: cfg.keptOrder, fileFormat: cfg.keptFileFormat === 'original' ? 'original' : 'posix',
    threads: o.threads ?? cfg.threads, ...(log ? { log } : {}), ...(o.signal ? { signal: o.signal } : {}),
  });
  const eps = extracted.map((r) => r.summary);
  const files: Record<string, string> = Object.fromEntries(cfg.epsList.map((e, i) => [`kept_eps${e}`, texts[i]!]));
  const seconds: Record<string, number> = {};
  for (const st of plan.stages) {
    let s = 0;
    for (let i = 0; i < st.tasks; i++) s += readState(plan, st.name, i)?.seconds ?? 0;
    seconds[st.name] = s;
  }
  atomicWriteFile(outputs.summary(dir), JSON.stringify({ n: plan.n, clusters: plan.k, whichToKeep: cfg.whichToKeep, eps: summarize(M, cfg.epsList), taskSeconds: seconds }, null, 2) + '\n');
  commitExtract(dir, cfg.epsList, ids, (e) => join(dir, `kept_eps${e}.txt`));
  // The manifest: the config, the engine and the plan (the steps were committed above).
  const m = readManifest(dir);
  const info = nativeInfo();
  m.config = toManifest(plan.config);
  m.configFiles = plan.config.files;
  m.engine = { name: 'semdedup', version: info.version, faiss: info.faiss, blasCore: info.blasCore };
  m.plan = { path: planPaths.plan(dir), id: plan.id, tasks: Object.fromEntries(plan.stages.map((s) => [s.name, s.tasks])) };
  writeManifest(dir, m);
  sweepStale(dir, cfg.sortedClustersDir ?? join(dir, 'sorted_clusters'));
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
