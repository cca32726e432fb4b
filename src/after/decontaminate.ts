// Decontamination against a reference set (SPEC "Decontamination"): row x is removed when
// max_{r in R} x . r > 1 − eps. `exact` compares every row with every reference row (tiled
// sgemm, then the float64 re-check near the threshold); `within-clusters` assigns the reference
// rows to the run's centroids and compares each row only with the reference rows of its own
// cluster, and measures its recall against the exact mode on a sample of rows.
import { existsSync, statSync } from 'node:fs';
import { ConfigError, InputError, NumericError } from '../errors.js';
import { openOutputWriter, writeOutputFile } from '../io/atomic.js';
import type { Ids } from '../io/ids.js';
import { readNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { requireCommitted } from '../manifest.js';
import { engineFor, loadNative } from '../native/index.js';
import { openEmbeddings, type Embeddings, type EmbeddingsSpec } from '../embeddings.js';
import { runNative, type CommonOptions } from '../steps/common.js';
import { prepareEmbeddings } from '../steps/check.js';
import { checkRunEmbeddings, checkRunIds, csvField, formatFor, LineSink, type TableFormat } from './common.js';
import { isRemovedAt, thresholdOf, validateOneEps } from '../decision.js';

export type DecontaminateMode = 'exact' | 'within-clusters';

export interface DecontaminateOptions extends CommonOptions {
  /** The dataset's embeddings. */
  embeddings: EmbeddingsSpec;
  /** The reference rows (e.g. a benchmark's test set), same dimension. */
  reference: EmbeddingsSpec;
  eps: number;
  /** 'exact' (default) or 'within-clusters' (needs the run's centroids and cluster order). */
  mode?: DecontaminateMode;
  /** The run's output folder (needed for within-clusters; also where the checks are recorded). */
  outputDir?: string;
  normalize?: 'auto' | 'always' | 'never';
  ids?: Ids;
  referenceIds?: Ids;
  /** Text file for the kept ids (joined by '\n', as extract writes them). */
  output?: string;
  /** CSV (or JSON Lines for .jsonl) of the removed rows and the reference row that matched. */
  matches?: string;
  format?: TableFormat;
  /** within-clusters: rows of the recall sample compared in exact mode (default 20,000; 0: none). */
  recallSample?: number;
}

export interface DecontaminateResult {
  eps: number;
  mode: DecontaminateMode;
  rows: number;
  referenceRows: number;
  kept: number;
  removed: number;
  keptRows: BigInt64Array;
  removedRows: BigInt64Array;
  /** For each removed row (same order): the reference row that matched and its similarity. */
  matchedReference: BigInt64Array;
  similarity: Float64Array;
  /** Rows re-checked in float64 near the threshold. */
  rechecked: number;
  /** within-clusters: recall against the exact mode on a sample of rows. */
  recall?: { sampleRows: number; exactRemoved: number; found: number; recall: number };
  seconds: number;
}

async function checkReference(ref: Embeddings, normalize: string, opts: CommonOptions): Promise<void> {
  const addon = loadNative();
  const tol = 1e-3;
  const r = await runNative(opts, 'check', ({ cancel }) => addon.scanEmbeddings({ emb: ref.native, normTol: tol, threads: opts.threads ?? 0, cancel }));
  if (r.nonfiniteRows > 0) throw new NumericError(`${ref.path}: row ${r.firstNonfinite} holds NaN or Inf`, { file: ref.path });
  if (r.zeroRows > 0) throw new NumericError(`${ref.path}: row ${r.firstZero} is all zeros`, { file: ref.path });
  if (r.unnormalizedRows > 0 && normalize !== 'never')
    throw new NumericError(
      `${ref.path}: row ${r.firstUnnormalized} is not L2-normalised (${r.unnormalizedRows} rows have |norm - 1| > ${tol}); ` +
        'cosine similarity is the dot product of unit rows: normalise the reference rows, or set `normalize: never` to use them as they are',
      { file: ref.path },
    );
}

function iota(n: number): BigInt64Array {
  const a = new BigInt64Array(n);
  for (let i = 0; i < n; i++) a[i] = BigInt(i);
  return a;
}

export async function decontaminate(opts: DecontaminateOptions): Promise<DecontaminateResult> {
  const t0 = performance.now();
  validateOneEps(opts.eps);
  const mode = opts.mode ?? 'exact';
  if (mode !== 'exact' && mode !== 'within-clusters') throw new ConfigError(`mode must be 'exact' or 'within-clusters', got '${mode}'`, { key: 'mode' });
  const normalize = opts.normalize ?? 'auto';
  if (opts.recallSample !== undefined && !(Number.isSafeInteger(opts.recallSample) && opts.recallSample >= 0))
    throw new ConfigError(`recall-sample must be a non-negative integer (rows compared exactly), got ${opts.recallSample}`, { key: 'recall-sample' });
  const refPath = opts.reference.path;
  if (typeof refPath === 'string' && !/[*?[]/.test(refPath)) {
    if (!existsSync(refPath)) throw new InputError(`${refPath}: reference file not found`, { file: refPath });
    if (statSync(refPath).isFile() && statSync(refPath).size === 0)
      throw new InputError(`${refPath}: the reference file is empty (0 bytes); give the reference embeddings (.npy, or a raw float32 memmap of dimension D)`, { file: refPath, key: 'reference' });
  }
  // In a run's folder, the rows (and the ids) must be the run's: its clusters, its lists.
  if (opts.outputDir) {
    checkRunEmbeddings(opts.outputDir, 'cluster', opts.embeddings.path);
    checkRunIds(opts.outputDir, opts.ids);
  }
  const ref = openEmbeddings(opts.reference);
  let emb: Embeddings | undefined;
  try {
    if (opts.outputDir) emb = await prepareEmbeddings(opts.embeddings, { ...opts, outputDir: opts.outputDir, normalize });
    else {
      emb = openEmbeddings(opts.embeddings);
      await checkReference(emb, normalize, opts);
    }
    if (ref.d !== emb.d) throw new InputError(`${ref.path}: the reference rows have ${ref.d} dimensions, the embeddings ${emb.d}`, { file: ref.path });
    await checkReference(ref, normalize, opts);
    if (opts.ids && opts.ids.length < emb.n) throw new InputError(`the ids hold ${opts.ids.length} entries but the embeddings have ${emb.n} rows`);
    if (opts.referenceIds && opts.referenceIds.length < ref.n)
      throw new InputError(`the reference ids hold ${opts.referenceIds.length} entries but the reference has ${ref.n} rows`);
    const addon = loadNative();
    const threshold = thresholdOf(opts.eps);
    const nativeOpts = { thresholds: [threshold], threads: opts.threads ?? 0 };
    const n = emb.n;
    const e = emb;
    // best[row], bestRef[row] for every row of the dataset.
    const best = new Float64Array(n);
    const bestRef = new BigInt64Array(n);
    let rechecked = 0;
    let recall: DecontaminateResult['recall'];
    if (mode === 'exact') {
      const st = await runNative(opts, 'decontaminate', (job) =>
        addon.maxSimilarityToReference({
          ...job, ...nativeOpts, emb: e.native, xRows: iota(n), xOffsets: BigInt64Array.of(0n, BigInt(n)),
          ref: ref.native, rRows: iota(ref.n), rOffsets: BigInt64Array.of(0n, BigInt(ref.n)), best, bestRef,
        }),
      );
      rechecked = st.rechecked;
    } else {
      const dir = opts.outputDir;
      if (!dir) throw new ConfigError('within-clusters decontamination needs the output folder of a run (its centroids and cluster order)', { key: 'output_dir' });
      for (const p of [outputs.centroids(dir), outputs.order(dir), outputs.offsets(dir)])
        if (!existsSync(p)) throw new InputError(`${p} not found: run the cluster and sort steps first (semdedup run, or semdedup cluster and semdedup sort)`, { file: p });
      // Only the centroids and the cluster order that the cluster and sort steps committed, for
      // these embeddings (a missing or damaged manifest commits nothing).
      const cluster = requireCommitted(dir, 'cluster', { centroids: outputs.centroids(dir) });
      requireCommitted(dir, 'sort', { order: outputs.order(dir), offsets: outputs.offsets(dir) });
      const centroids = readNpy(outputs.centroids(dir)).data as Float32Array;
      const order = readNpy(outputs.order(dir)).data as BigInt64Array;
      const offsets = readNpy(outputs.offsets(dir)).data as BigInt64Array;
      const k = offsets.length - 1;
      if (!(centroids instanceof Float32Array) || !(order instanceof BigInt64Array) || !(offsets instanceof BigInt64Array) || centroids.length !== k * emb.d || order.length !== n)
        throw new InputError(`${dir}: the centroids (${centroids.length / emb.d} × ${emb.d}) or the cluster order (${order.length} rows) do not match the embeddings (${n} × ${emb.d}) and ${k} clusters; rerun semdedup run`, { file: outputs.centroids(dir) });
      const spherical = cluster.params.spherical === true;
      const nearest = new BigInt64Array(ref.n);
      const dist = new Float32Array(ref.n);
      await runNative(opts, 'decontaminate:assign', (job) =>
        addon.assignNearest({ ...job, emb: ref.native, centroids, k, innerProduct: spherical, nearest, dist, threads: opts.threads ?? 0, engine: engineFor(opts.device) }),
      );
      // Reference rows grouped by cluster (ascending row order within a cluster).
      const counts = new Float64Array(k + 1);
      for (let i = 0; i < ref.n; i++) counts[Number(nearest[i]!) + 1]!++;
      const rOffsets = new BigInt64Array(k + 1);
      for (let c = 0; c < k; c++) rOffsets[c + 1] = rOffsets[c]! + BigInt(counts[c + 1]!);
      const fill = Array.from({ length: k }, (_, c) => Number(rOffsets[c]!));
      const rRows = new BigInt64Array(ref.n);
      for (let i = 0; i < ref.n; i++) rRows[fill[Number(nearest[i]!)]!++] = BigInt(i);
      const pb = new Float64Array(n);
      const pr = new BigInt64Array(n);
      const st = await runNative(opts, 'decontaminate', (job) =>
        addon.maxSimilarityToReference({ ...job, ...nativeOpts, emb: e.native, xRows: order, xOffsets: offsets, ref: ref.native, rRows, rOffsets, best: pb, bestRef: pr }),
      );
      rechecked = st.rechecked;
      for (let q = 0; q < n; q++) {
        const row = Number(order[q]!);
        best[row] = pb[q]!;
        bestRef[row] = pr[q]!;
      }
      const sample = Math.min(n, opts.recallSample ?? 20_000);
      if (sample > 0) {
        // An evenly spaced sample of rows, compared with every reference row.
        const rows = new BigInt64Array(sample);
        for (let i = 0; i < sample; i++) rows[i] = BigInt(Math.floor((i * n) / sample));
        const sb = new Float64Array(sample);
        const sr = new BigInt64Array(sample);
        await runNative(opts, 'decontaminate:recall', (job) =>
          addon.maxSimilarityToReference({
            ...job, ...nativeOpts, emb: e.native, xRows: rows, xOffsets: BigInt64Array.of(0n, BigInt(sample)),
            ref: ref.native, rRows: iota(ref.n), rOffsets: BigInt64Array.of(0n, BigInt(ref.n)), best: sb, bestRef: sr,
          }),
        );
        let exactRemoved = 0;
        let found = 0;
        for (let i = 0; i < sample; i++)
          if (isRemovedAt(sb[i]!, threshold)) {
            exactRemoved++;
            if (isRemovedAt(best[Number(rows[i]!)]!, threshold)) found++;
          }
        recall = { sampleRows: sample, exactRemoved, found, recall: exactRemoved ? found / exactRemoved : 1 };
        opts.log?.(
          `within-clusters recall against the exact mode: ${exactRemoved ? (100 * recall.recall).toFixed(2) + '%' : 'n/a'} (${found} of ${exactRemoved} contaminated rows found, on a sample of ${sample} rows)`,
        );
      }
    }
    let removed = 0;
    for (let i = 0; i < n; i++) if (isRemovedAt(best[i]!, threshold)) removed++;
    const keptRows = new BigInt64Array(n - removed);
    const removedRows = new BigInt64Array(removed);
    const matchedReference = new BigInt64Array(removed);
    const similarity = new Float64Array(removed);
    let a = 0;
    let r = 0;
    for (let i = 0; i < n; i++) {
      if (isRemovedAt(best[i]!, threshold)) {
        removedRows[r] = BigInt(i);
        matchedReference[r] = bestRef[i]!;
        similarity[r++] = best[i]!;
      } else keptRows[a++] = BigInt(i);
    }
    const idOf = (row: number) => (opts.ids ? opts.ids.get(row) : String(row));
    const refIdOf = (row: number) => (opts.referenceIds ? opts.referenceIds.get(row) : String(row));
    if (opts.output) {
      const parts: string[] = [];
      for (let b = 0; b < keptRows.length; b += 65536) {
        const chunk: string[] = [];
        for (let i = b; i < Math.min(keptRows.length, b + 65536); i++) chunk.push(idOf(Number(keptRows[i]!)));
        parts.push(chunk.join('\n'));
      }
      // A POSIX text file: every id followed by a newline.
      writeOutputFile(opts.output, parts.join('\n') + (keptRows.length ? '\n' : ''));
    }
    if (opts.matches) {
      const format = formatFor(opts.matches, opts.format);
      const w = openOutputWriter(opts.matches, '--matches');
      try {
        const sink = new LineSink((s) => w.write(s));
        if (format === 'csv') sink.push('id,row,reference_id,reference_row,similarity');
        for (let i = 0; i < removed; i++) {
          const row = Number(removedRows[i]!);
          const rr = Number(matchedReference[i]!);
          if (format === 'csv') sink.push(`${csvField(idOf(row))},${row},${csvField(refIdOf(rr))},${rr},${similarity[i]}`);
          else sink.push(JSON.stringify({ id: idOf(row), row, reference_id: refIdOf(rr), reference_row: rr, similarity: similarity[i] }));
        }
        sink.flush();
        w.commit();
      } catch (err) {
        w.abort();
        throw err;
      }
    }
    opts.log?.(`decontaminate (${mode}, eps ${opts.eps}): ${removed} of ${n} rows within ${opts.eps} of a reference row; ${rechecked} re-checked in float64`);
    return {
      eps: opts.eps, mode, rows: n, referenceRows: ref.n, kept: n - removed, removed, keptRows, removedRows, matchedReference, similarity, rechecked,
      ...(recall ? { recall } : {}), seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    emb?.close();
    ref.close();
  }
}
