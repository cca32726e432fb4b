// Step 4 (the original's semdedup; docs/algorithm.md): inside each cluster, in keep order, the largest
// similarity of every member to an earlier one (M), computed by the native tiled kernel.
// All eps come from one pass; M is stored, so a new eps needs no recomputation.
// Long runs are resumable: clusters are processed in parts, each part saved as it completes.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { cpus } from 'node:os';
import { InputError } from '../errors.js';
import { readNpy, writeNpy } from '../io/npy.js';
import { atomicWriteFile } from '../io/atomic.js';
import { outputs } from '../layout.js';
import { engineFor, loadNative, type CpuFilter, type MaxSimStats, type MPrecision, type NativeEmbeddings } from '../native/index.js';
import { isRemoved, thresholdsOf, validateEps } from '../decision.js';
import { embeddingsFiles, embeddingsInputs, embeddingsStamp, type Embeddings, type EmbeddingsLayout } from '../embeddings.js';
import { withDefaults, type ConfigFields, type PartialConfig } from '../config.js';
import { ALGORITHM_VERSION, ensureOutputDir, noteBackend, now, runNative, throwIfAborted, type CommonOptions } from './common.js';
import { currentRecord, matches, readManifest, recordIsCurrent, recordStep, requireCommitted, requireSameInputs, sealed, stamp, unseal, type FileStamp } from '../manifest.js';
import { commitExact, findExactDuplicates, type ExactDuplicatesResult } from './exact.js';

export type WhichToKeep = PartialConfig['whichToKeep'];

/** The options of step 4; the keep order, seed and exact-duplicates pass are the schema's. */
/** Keep order by a metadata column: its value per row (float64) and the order. */
export interface RankValues {
  column: string;
  order: 'asc' | 'desc';
  values: Float64Array;
  /** The file the values were read from (a step input in the manifest). */
  file?: string;
}

/** The options of step 4; the keep order, seed and exact-duplicates pass are the schema's. */
export interface DedupOptions extends CommonOptions, ConfigFields<'whichToKeep' | 'seed' | 'exactDuplicates'> {
  /** Keep order by a metadata column (`rank_by`), instead of which_to_keep. */
  rank?: RankValues;
  /** The checked embeddings (prepareEmbeddings). */
  embeddings: Embeddings;
  outputDir: string;
  /** eps values: a member is removed when M > 1 - eps (src/decision.ts). */
  epsList: number[];
}

export interface EpsSummary {
  eps: number;
  kept: number;
  removed: number;
  keptFraction: number;
}

export interface DedupResult {
  /** Rows in keep order (cluster by cluster). */
  keepOrder: BigInt64Array;
  offsets: BigInt64Array;
  /** M per keep-order position. */
  M: Float64Array;
  /** The earlier row that reached M, or -1. */
  Mrow: BigInt64Array;
  summary: EpsSummary[];
  stats: MaxSimStats;
  seconds: number;
  resumedParts: number;
}

/**
 * The keep order of each cluster and the original's `indices` column (native, off the event loop):
 * 'hard' keeps the step-3 order, 'easy' reverses it, 'random' shuffles it (Fisher–Yates with a
 * generator seeded by (seed, cluster), so a cluster's order does not depend on which clusters ran
 * before it; docs/algorithm.md).
 */
export async function keepOrderOf(order: BigInt64Array, offsets: BigInt64Array, which: WhichToKeep, seed: number, threads = 0, rank?: RankValues) {
  const keepOrder = new BigInt64Array(order.length);
  const keepIndex = new BigInt64Array(order.length);
  if (rank) {
    rankedKeepOrder(order, offsets, rank, keepOrder, keepIndex);
    return { keepOrder, keepIndex };
  }
  await loadNative().keepOrder({ order, offsets, which, seed, keepOrder, keepIndex, threads });
  return { keepOrder, keepIndex };
}

/**
 * `rank_by`: each cluster's members ordered by the column (descending or ascending); ties keep the
 * step-3 order, which is the distance order with ties in ascending row order (docs/algorithm.md).
 */
export function rankedKeepOrder(order: BigInt64Array, offsets: BigInt64Array, rank: RankValues, keepOrder: BigInt64Array, keepIndex: BigInt64Array): void {
  const v = rank.values;
  const sign = rank.order === 'desc' ? -1 : 1;
  const k = offsets.length - 1;
  const idx: number[] = [];
  for (let c = 0; c < k; c++) {
    const b = Number(offsets[c]!);
    const e = Number(offsets[c + 1]!);
    idx.length = 0;
    for (let p = 0; p < e - b; p++) idx.push(p);
    const val = (p: number) => v[Number(order[b + p]!)]!;
    idx.sort((x, y) => {
      const a = val(x);
      const z = val(y);
      return a === z ? x - y : a < z ? -sign : sign;
    });
    for (let q = 0; q < idx.length; q++) {
      keepOrder[b + q] = order[b + idx[q]!]!;
      keepIndex[b + q] = BigInt(idx[q]!);
    }
  }
}

/** Removed / kept per eps from M (member removed when M > 1 - eps; single members have M = 0). */
export function summarize(M: Float64Array, epsList: readonly number[]): EpsSummary[] {
  return epsList.map((eps) => {
    let removed = 0;
    for (let i = 0; i < M.length; i++) if (isRemoved(M[i]!, eps)) removed++;
    const kept = M.length - removed;
    return { eps, kept, removed, keptFraction: M.length ? kept / M.length : 1 };
  });
}

/** Splits clusters into parts of similar cost (sum of n^2), for resumable progress. */
function planParts(offsets: BigInt64Array, target: number): [number, number][] {
  const k = offsets.length - 1;
  let total = 0;
  for (let c = 0; c < k; c++) total += Number(offsets[c + 1]! - offsets[c]!) ** 2;
  const budget = Math.max(1, total / target);
  const parts: [number, number][] = [];
  let start = 0;
  let acc = 0;
  for (let c = 0; c < k; c++) {
    acc += Number(offsets[c + 1]! - offsets[c]!) ** 2;
    if (acc >= budget) {
      parts.push([start, c + 1]);
      start = c + 1;
      acc = 0;
    }
  }
  if (start < k) parts.push([start, k]);
  return parts;
}

/**
 * Step 4's M for a run of whole clusters (a planned run's `dedup` stage, or a part of a single
 * run): `keepOrder` holds their members in keep order, `offsets` their bounds from 0; M and the
 * earlier row go to `M` and `Mrow` (as long as `keepOrder`). `at`: where these positions stand in
 * the progress of the whole job.
 */
export async function maxSimilarityOfClusters(
  rows: NativeEmbeddings, keepOrder: BigInt64Array, offsets: BigInt64Array, M: Float64Array, Mrow: BigInt64Array,
  o: CommonOptions & { epsList: readonly number[] }, at: { done: number; total: number } = { done: 0, total: keepOrder.length },
): Promise<MaxSimStats> {
  const len = keepOrder.length;
  return runNative(o, 'dedup', ({ onProgress, cancel }) =>
    loadNative().maxSimilarity({
      emb: rows, order: keepOrder, offsets, M, arg: Mrow, thresholds: thresholdsOf(o.epsList), threads: o.threads, engine: engineFor(o.device), gpuMemoryLimit: o.gpuMemoryLimit,
      onProgress: (d, t) => onProgress(at.done + (t ? (len * d) / t : 0), at.total), cancel,
    }),
  );
}

/**
 * Step 4's M for positions [j0, j1) of one cluster (`members`: all of its members in keep order),
 * as the whole-cluster kernel computes them (on the CPU; a planned run's block of a large cluster).
 */
export async function maxSimilarityOfBlock(
  rows: NativeEmbeddings, members: BigInt64Array, j0: number, j1: number, M: Float64Array, Mrow: BigInt64Array,
  o: CommonOptions & { epsList: readonly number[] }, at: { done: number; total: number } = { done: 0, total: j1 - j0 },
) {
  return runNative(o, 'dedup:block', ({ onProgress, cancel }) =>
    loadNative().maxSimilarityBlock({
      emb: rows, rows: members, j0, j1, M, arg: Mrow, thresholds: thresholdsOf(o.epsList), threads: o.threads,
      onProgress: (d, t) => onProgress(at.done + (t ? ((j1 - j0) * d) / t : 0), at.total), cancel,
    }),
  );
}

/** What step 4 is computed with: the keep order's rule and the eps list. */
export interface DedupSpec {
  whichToKeep: WhichToKeep;
  seed: number;
  epsList: number[];
  rank?: RankValues | undefined;
}

/** What the `dedup` record commits: step 4's parameters and inputs. */
function dedupRecord(dir: string, emb: EmbeddingsLayout, s: DedupSpec) {
  const rank = s.rank;
  return {
    params: { whichToKeep: s.whichToKeep, seed: s.seed, epsList: s.epsList, algorithm: ALGORITHM_VERSION, ...(rank ? { rankBy: { column: rank.column, order: rank.order } } : {}) },
    inputs: { ...embeddingsInputs(emb), order: outputs.order(dir), offsets: outputs.offsets(dir), ...(rank?.file ? { rank: rank.file } : {}) },
  };
}

/** Writes step 4's files: the keep order, its index, M and the earlier row of every position. */
export function writeDedupFiles(dir: string, r: { keepOrder: BigInt64Array; keepIndex: BigInt64Array; M: Float64Array; Mrow: BigInt64Array }): void {
  writeNpy(outputs.keepOrder(dir), r.keepOrder);
  writeNpy(outputs.keepIndex(dir), r.keepIndex);
  writeNpy(outputs.M(dir), r.M);
  writeNpy(outputs.Marg(dir), r.Mrow);
}

/** Commits step 4 (its files written): the `dedup` record. */
export function commitDedup(dir: string, emb: EmbeddingsLayout, s: DedupSpec, stats: Record<string, unknown>): void {
  const { params, inputs } = dedupRecord(dir, emb, s);
  recordStep(dir, 'dedup', params, inputs, { M: outputs.M(dir), keepOrder: outputs.keepOrder(dir), keepIndex: outputs.keepIndex(dir), Mrow: outputs.Marg(dir) }, stats);
}

/** The counts of max-similarity jobs (MaxSimStats without the backend), summed over parts and tasks. */
export type MaxSimCounts = Omit<MaxSimStats, 'backend' | 'backendNote'>;

/** No job yet: every count 0, the fp32 filter, M exact. */
export function noMaxSimCounts(): MaxSimCounts {
  return {
    members: 0, clusters: 0, usefulFlops: 0, computedFlops: 0, rechecked: 0, rescanned: 0,
    filter: 'fp32', filterChecked: 0, copies: 0, mPrecision: { exactAtOrAbove: -1, boundBelow: 0 },
  };
}

/**
 * Adds the counts of one job to `into`. The filter is taken from jobs over whole clusters
 * (`wholeClusters`; a block of a split cluster always runs float32 tiles). M's precision is the
 * weakest of the jobs': the largest exactAtOrAbove and boundBelow.
 */
export function addMaxSimCounts(into: MaxSimCounts, st: Partial<MaxSimCounts>, wholeClusters: boolean): void {
  for (const key of ['members', 'clusters', 'usefulFlops', 'computedFlops', 'rechecked', 'rescanned', 'filterChecked', 'copies'] as const) into[key] += st[key] ?? 0;
  if (wholeClusters && st.filter) into.filter = st.filter;
  if (st.mPrecision) into.mPrecision = precisionOf(into.mPrecision, st.mPrecision);
}

function precisionOf(a: MPrecision, b: MPrecision): MPrecision {
  return { exactAtOrAbove: Math.max(a.exactAtOrAbove, b.exactAtOrAbove), boundBelow: Math.max(a.boundBelow, b.boundBelow) };
}

/**
 * What a run re-checked exactly (summary.json's `checks`, named as in the manifest's cluster and
 * dedup records; docs/algorithm.md, "Exact re-checks recorded"): the filter of each distance pass, the rows
 * and members it left to a float32 check and a float64 re-score, and the precision of M. Every
 * count depends on the data and SEMDEDUP_ISA only, not on threads, parts or tasks.
 */
export interface RunChecks {
  cluster?: {
    iterations: number;
    searchedRows: number;
    prunedRows: number;
    filter: { train?: CpuFilter; assign?: CpuFilter };
    filterCheckedRows: { train: number; assign: number };
    rescoredRows: { train: number; assign: number };
  };
  dedup: Pick<MaxSimCounts, 'filter' | 'members' | 'copies' | 'filterChecked' | 'rechecked' | 'rescanned' | 'mPrecision'>;
}

/** summary.json: rows, clusters, keep order, kept and removed per eps, the exact re-checks and, after a run, the seconds of each step. */
export interface RunSummary {
  n: number;
  clusters: number;
  whichToKeep: WhichToKeep;
  eps: EpsSummary[];
  checks?: RunChecks;
  /** cluster, sort, dedup, extract and total (a planned run: summed over each step's tasks). */
  seconds?: Record<string, number>;
}

/**
 * Writes summary.json (the one writer: the dedup step, a single run, a planned run's extract task).
 * `dedupStats`: step 4's counts (its record's stats); the cluster step's come from its record.
 */
export function writeSummary(dir: string, s: Omit<RunSummary, 'checks'> & { dedupStats: Partial<MaxSimCounts> }): void {
  const cluster = readManifest(dir).steps.cluster?.stats as RunChecks['cluster'] | undefined;
  const d = { ...noMaxSimCounts(), ...s.dedupStats };
  const checks: RunChecks = {
    ...(cluster
      ? {
          cluster: {
            iterations: cluster.iterations ?? 0, searchedRows: cluster.searchedRows ?? 0, prunedRows: cluster.prunedRows ?? 0,
            filter: cluster.filter ?? {}, filterCheckedRows: cluster.filterCheckedRows ?? { train: 0, assign: 0 }, rescoredRows: cluster.rescoredRows ?? { train: 0, assign: 0 },
          },
        }
      : {}),
    dedup: { filter: d.filter, members: d.members, copies: d.copies, filterChecked: d.filterChecked, rechecked: d.rechecked, rescanned: d.rescanned, mPrecision: d.mPrecision },
  };
  const out: RunSummary = { n: s.n, clusters: s.clusters, whichToKeep: s.whichToKeep, eps: s.eps, checks, ...(s.seconds ? { seconds: s.seconds } : {}) };
  atomicWriteFile(outputs.summary(dir), JSON.stringify(out, null, 2) + '\n');
}

export async function semdedup(options: DedupOptions): Promise<DedupResult> {
  const t0 = now();
  const opts = withDefaults(options);
  const dir = opts.outputDir;
  validateEps(opts.epsList);
  const { whichToKeep: which, seed, threads } = opts;
  for (const p of [outputs.order(dir), outputs.offsets(dir)])
    if (!existsSync(p)) throw new InputError(`${p} not found: run the sort step first (semdedup sort)`, { file: p });
  // Only the sort step's committed results are read; unchanged inputs and params: skipped.
  requireCommitted(dir, 'sort', { order: outputs.order(dir), offsets: outputs.offsets(dir) });
  // M is computed from the embeddings that were clustered (every shard), not from others named since.
  requireSameInputs(dir, 'cluster', 'embeddings', embeddingsFiles(opts.embeddings), 'embeddings');
  const rank = opts.rank;
  if (rank && rank.values.length !== opts.embeddings.n)
    throw new InputError(`rank_by: the column '${rank.column}' holds ${rank.values.length} values, the embeddings ${opts.embeddings.n} rows`, { key: 'rank_by' });
  const spec: DedupSpec = { whichToKeep: which, seed, epsList: opts.epsList, rank };
  const rec = dedupRecord(dir, opts.embeddings, spec);
  const done = currentRecord(dir, 'dedup', rec.params, rec.inputs);
  if (done) {
    const M = readNpy(outputs.M(dir)).data as Float64Array;
    const offsets = readNpy(outputs.offsets(dir)).data as BigInt64Array;
    const keepOrder = readNpy(outputs.keepOrder(dir)).data as BigInt64Array;
    opts.log?.('dedup: up to date, reused');
    if (opts.exactDuplicates && !recordIsCurrent(dir, 'exact')) commitExact(dir, opts.embeddings, await findExactDuplicates({ ...opts, order: keepOrder, outputDir: dir }), true);
    return {
      keepOrder, offsets, M, Mrow: readNpy(outputs.Marg(dir)).data as BigInt64Array,
      summary: summarize(M, opts.epsList), stats: (done.stats ?? {}) as unknown as MaxSimStats, seconds: (now() - t0) / 1000, resumedParts: 0,
    };
  }
  const order = readNpy(outputs.order(dir)).data as BigInt64Array;
  const offsets = readNpy(outputs.offsets(dir)).data as BigInt64Array;
  const { keepOrder, keepIndex } = await keepOrderOf(order, offsets, which, seed, threads, rank);
  const n = order.length;
  const k = offsets.length - 1;

  const emb = opts.embeddings;
  const M = new Float64Array(n);
  const Mrow = new BigInt64Array(n);
  const stats: MaxSimStats = { ...noMaxSimCounts(), backend: 'cpu', backendNote: '' };
  let resumedParts = 0;
  let exact: ExactDuplicatesResult | undefined;
  {
    const rows = BigInt(emb.n);
    for (let i = 0; i < n; i++)
      if (order[i]! < 0n || order[i]! >= rows)
        throw new InputError(`${outputs.order(dir)}: row ${order[i]} is outside the ${emb.n} rows of ${emb.path}`, { file: outputs.order(dir) });
    if (opts.exactDuplicates) exact = await findExactDuplicates({ ...opts, order: keepOrder, outputDir: dir });
    // Parts are tied to everything that determines their content.
    const key = createHash('sha256')
      .update(JSON.stringify({ emb: embeddingsStamp(emb), order: stamp(outputs.order(dir)), which, seed, eps: [...opts.epsList].sort(), rank: rank ? { column: rank.column, order: rank.order, file: rank.file ? stamp(rank.file) : null } : undefined }))
      .digest('hex')
      .slice(0, 16);
    const partsDir = join(outputs.parts(dir), key);
    ensureOutputDir(partsDir);
    // Parts bound the work lost to an interruption, but each part ends with workers idling on
    // its last items: keep at least ~64 clusters per worker in a part, and at most 64 parts.
    const workers = threads > 0 ? threads : cpus().length;
    const parts = planParts(offsets, Math.max(1, Math.min(64, Math.floor(k / (64 * workers)))));
    let doneCost = 0;
    const totalCost = Number(offsets[k]!);
    for (const [c0, c1] of parts) {
      throwIfAborted(opts.signal);
      const b = Number(offsets[c0]!);
      const e = Number(offsets[c1]!);
      const mPath = join(partsDir, `M_${c0}_${c1}.npy`);
      const rPath = join(partsDir, `row_${c0}_${c1}.npy`);
      const sPath = join(partsDir, `part_${c0}_${c1}.json`);
      // A part is resumed only when its sealed record holds the checksums of both of its files;
      // its counts come from the record, so a resumed run records what one run would.
      const resumed = partRecord(sPath, { M: mPath, row: rPath });
      if (resumed) {
        const pm = readNpy(mPath).data as Float64Array;
        const pr = readNpy(rPath).data as BigInt64Array;
        if (pm.length === e - b && pr.length === e - b) {
          M.set(pm, b);
          Mrow.set(pr, b);
          if (resumed.stats) addMaxSimCounts(stats, resumed.stats, true);
          resumedParts++;
          doneCost += e - b;
          continue;
        }
      }
      const subOffsets = new BigInt64Array(c1 - c0 + 1);
      for (let c = c0; c <= c1; c++) subOffsets[c - c0] = offsets[c]! - BigInt(b);
      const pm = M.subarray(b, e);
      const pr = Mrow.subarray(b, e);
      const st = await maxSimilarityOfClusters(emb.native, keepOrder.subarray(b, e), subOffsets, pm, pr, opts, { done: doneCost, total: totalCost });
      if (stats.members === 0 || st.backend !== stats.backend) noteBackend(opts.log, 'max similarity', st);
      stats.backend = st.backend;
      stats.backendNote = st.backendNote;
      addMaxSimCounts(stats, st, true);
      writeNpy(mPath, pm);
      writeNpy(rPath, pr);
      atomicWriteFile(sPath, JSON.stringify(sealed({ M: stamp(mPath), row: stamp(rPath), stats: st })) + '\n');
      doneCost += e - b;
      opts.onProgress?.({ stage: 'dedup', done: doneCost, total: totalCost });
    }
  }
  writeDedupFiles(dir, { keepOrder, keepIndex, M, Mrow });
  const summary = summarize(M, opts.epsList);
  writeSummary(dir, { n, clusters: k, whichToKeep: which, eps: summary, dedupStats: stats });
  // The parts go before the commit: a run killed in between finds step 4 not committed and redoes it.
  rmSync(outputs.parts(dir), { recursive: true, force: true });
  const seconds = (now() - t0) / 1000;
  commitDedup(dir, emb, spec, { ...stats, seconds, resumedParts });
  if (exact) commitExact(dir, emb, exact, true);
  return { keepOrder, offsets, M, Mrow, summary, stats, seconds, resumedParts };
}

/** The sealed record `file` of a resumable part when it holds the checksums of `files` as they are now (and the part's counts). */
function partRecord(file: string, files: Record<string, string>): { stats?: MaxSimCounts } | undefined {
  if (!existsSync(file)) return undefined;
  let rec: Record<string, unknown> | undefined;
  try {
    rec = unseal<Record<string, unknown>>(readFileSync(file, 'utf8')).value;
  } catch {
    return undefined;
  }
  if (!rec || !Object.entries(files).every(([k, p]) => matches(rec![k] as FileStamp | undefined, p))) return undefined;
  const st = rec.stats as MaxSimCounts | undefined;
  return st && typeof st === 'object' ? { stats: st } : {};
}

