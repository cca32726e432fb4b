// step 5 (docs/algorithm.md) (the original's extract_pruned_data): for one eps, walk clusters 0..k-1 and
// within each the members in keep order (the order of the original's tables), and write the ids
// of the kept (or removed) members, one per line: a POSIX text file (every id followed by '\n'),
// or the original's bytes (joined by '\n', no final newline) with `fileFormat: 'original'`; in
// that order, or in input order with `order: 'input'`. Also writes the kept rows as .npy (always
// in cluster order) and the summary per eps as JSON.
//
// Every eps of a command is extracted in one native pass over M and the keep order
// (extractPrunedDataAll); the ids are formatted in parallel and written with large writes.
import { existsSync } from 'node:fs';
import { ConfigError, InputError, OutputError, type SemDedupError } from '../errors.js';
import { openAtomicWriter, openOutputWriter, outputTarget } from '../io/atomic.js';
import { readNpy, writeNpy } from '../io/npy.js';
import type { Ids } from '../io/ids.js';
import { outputs } from '../layout.js';
import { recordStep, requireCommitted } from '../manifest.js';
import { loadNative, type NativeIds } from '../native/index.js';
import { ensureOutputDir, now, runNative, type Progress } from './common.js';
import type { EpsSummary } from './dedup.js';
import { thresholdsOf, validateEps } from '../decision.js';
import { idsInputs } from '../io/ids.js';

export interface ExtractOptions {
  outputDir: string;
  eps: number;
  /** Text file to write the ids to (default: none). */
  output?: string;
  /** Write the removed ids instead of the kept ones. */
  removed?: boolean;
  /** Ids (default: row numbers). */
  ids?: Ids;
  /** Step 4's keep order and M when the caller has them (else read from the output folder). */
  data?: { keepOrder: BigInt64Array; M: Float64Array };
  /** Params the dedup step must have run with (e.g. whichToKeep) for its files to be read. */
  want?: Record<string, unknown>;
  log?: (line: string) => void;
  /** Worker threads (0 or absent: all cores). */
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Order of the ids in the text file: 'cluster' (default; the original's) or 'input' (ascending row). */
  order?: 'cluster' | 'input';
  /** 'posix' (default): every id followed by a newline; 'original': joined by newlines, no final one (the original's bytes). */
  fileFormat?: 'posix' | 'original';
}

export interface ExtractAllOptions extends Omit<ExtractOptions, 'eps' | 'output'> {
  epsList: number[];
  /** The ids text file of each eps (same length as epsList; undefined: none for that eps). */
  outputs?: (string | undefined)[];
  /**
   * Who named `outputs`: 'engine' (default; files of the output folder, written atomically) or
   * 'user' (`-` is the standard output, a FIFO or device is written through, a link refused: openOutputWriter).
   */
  namedBy?: 'engine' | 'user';
}

export interface ExtractResult {
  eps: number;
  /** Kept rows in output order. */
  keptRows: BigInt64Array;
  removedRows: BigInt64Array;
  summary: EpsSummary;
  output?: string;
  seconds: number;
}

// The native form of a set of ids, made once per Ids object (ids are read once per command and
// shared by every eps and step).
const nativeIdsCache = new WeakMap<Ids, NativeIds | null>();

async function nativeIds(ids: Ids | undefined, n: number): Promise<NativeIds | null> {
  if (!ids || ids.source === 'rows') return { kind: 'rows', count: ids ? ids.length : n };
  const cached = nativeIdsCache.get(ids);
  if (cached !== undefined) return cached;
  let out: NativeIds | null;
  if (ids.raw && ids.width) {
    out = { kind: ids.strKind === 'S' ? 'bytes' : 'utf32', data: ids.raw, width: ids.width, count: ids.length };
  } else if (ids.length === 0) {
    out = { kind: 'blob', data: new Uint8Array(0), offsets: BigInt64Array.of(0n), count: 0 };
  } else {
    const data = Buffer.from(ids.toArray().join('\n'), 'utf8');
    const offsets = await loadNative().blobOffsets({ blob: data });
    // An id holding '\n' would split: such ids are written by the plain loop.
    out = offsets.length === ids.length + 1 ? { kind: 'blob', data, offsets, count: ids.length } : null;
  }
  nativeIdsCache.set(ids, out);
  return out;
}

/** The ids of `rows` joined by '\n', for ids the native writer does not take (row numbers without ids). */
function idsText(ids: Ids | undefined, rows: BigInt64Array): string {
  const chunks: string[] = [];
  let buf: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    buf.push(ids ? ids.get(Number(rows[i]!)) : String(rows[i]!));
    if (buf.length === 65536) {
      chunks.push(buf.join('\n'));
      buf = [];
    }
  }
  if (buf.length) chunks.push(buf.join('\n'));
  return chunks.join('\n');
}

async function writeIds(target: string, ids: Ids | undefined, native: NativeIds | null, rows: BigInt64Array, opts: ExtractAllOptions,
  progress: { done: number; total: number }): Promise<void> {
  const user = opts.namedBy === 'user';
  const w = user ? openOutputWriter(target) : openAtomicWriter(target);
  try {
    // The standard output is written from here (Node may have made its pipe non-blocking).
    if (native && !(user && target === '-')) {
      try {
        // Progress is reported per file, from here (one total for every file of the command): a
        // throttled report from the worker thread could arrive after the promise settles.
        const { onProgress: _unused, ...quiet } = opts;
        await runNative(quiet, 'extract', ({ cancel }) => loadNative().writeIdsText({ fd: w.fd, ids: native, rows, threads: opts.threads ?? 0, cancel }));
      } catch (e) {
        const cause = (e as { cause?: SemDedupError }).cause;
        if (cause?.reason === 'format' && ids?.file)
          throw new InputError(`${ids.file}: ${cause.message}`, { file: ids.file, cause: e });
        if (cause?.reason === 'io') throw new OutputError(`${target}: cannot write: ${cause.message}`, { file: target, cause: e });
        throw e;
      }
    } else {
      w.write(idsText(ids, rows));
    }
    if (rows.length > 0 && opts.fileFormat !== 'original') w.write('\n');
    w.commit();
    progress.done += rows.length;
    opts.onProgress?.({ stage: 'extract', done: progress.done, total: progress.total });
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** Step 5 for every eps of epsList at once: one pass over M and the keep order, then each eps's files. */
export async function extractPrunedDataAll(opts: ExtractAllOptions): Promise<ExtractResult[]> {
  const t0 = now();
  const dir = opts.outputDir;
  validateEps(opts.epsList);
  if (opts.outputs && opts.outputs.length !== opts.epsList.length)
    throw new ConfigError(`extract: ${opts.outputs.length} output files for ${opts.epsList.length} eps`);
  if (!opts.data) {
    for (const p of [outputs.keepOrder(dir), outputs.M(dir)])
      if (!existsSync(p)) throw new InputError(`${p} not found: run the dedup step first (semdedup dedup)`, { file: p });
    // Only a keep order and M that the dedup step committed together, for the requested params.
    requireCommitted(dir, 'dedup', { keepOrder: outputs.keepOrder(dir), M: outputs.M(dir) }, opts.want ?? {});
  }
  const keepOrder = opts.data?.keepOrder ?? (readNpy(outputs.keepOrder(dir)).data as BigInt64Array);
  const M = opts.data?.M ?? (readNpy(outputs.M(dir)).data as Float64Array);
  if (M.length !== keepOrder.length)
    throw new InputError(`${outputs.M(dir)}: ${M.length} values but keep_order.npy has ${keepOrder.length}; rerun semdedup dedup`, { file: outputs.M(dir) });
  if (opts.ids && opts.ids.length < keepOrder.length)
    throw new InputError(`the ids hold ${opts.ids.length} entries but the embeddings have ${keepOrder.length} rows`);
  const split = await runNative(opts, 'extract', ({ cancel }) =>
    loadNative().splitKept({ keepOrder, M, thresholds: thresholdsOf(opts.epsList), threads: opts.threads ?? 0, cancel }));
  ensureOutputDir(outputs.ours(dir));
  const native = opts.outputs?.some((o) => o) ? await nativeIds(opts.ids, keepOrder.length) : null;
  const common = (now() - t0) / 1000;
  const progress = { done: 0, total: 0 };
  for (let e = 0; e < opts.epsList.length; e++)
    if (opts.outputs?.[e]) progress.total += (opts.removed ? split.removed[e]! : split.kept[e]!).length;
  // A user-named output that cannot be written (a link, a folder) is refused before any file is.
  if (opts.namedBy === 'user') for (const o of opts.outputs ?? []) if (o) outputTarget(o);
  const results: ExtractResult[] = [];
  for (let e = 0; e < opts.epsList.length; e++) {
    const t1 = now();
    const eps = opts.epsList[e]!;
    const keptRows = split.kept[e]!;
    const removedRows = split.removed[e]!;
    writeNpy(outputs.keptRows(dir, eps), keptRows);
    const output = opts.outputs?.[e];
    if (output) {
      const rows = opts.removed ? removedRows : keptRows;
      await writeIds(output, opts.ids, native, opts.order === 'input' ? rows.slice().sort() : rows, opts, progress);
    }
    const nKept = keptRows.length;
    const summary: EpsSummary = { eps, kept: nKept, removed: M.length - nKept, keptFraction: M.length ? nKept / M.length : 1 };
    opts.log?.(`eps ${eps}: kept ${summary.kept} of ${M.length} (${(100 * summary.keptFraction).toFixed(2)}%), removed ${summary.removed}`);
    // Each eps's time is its own files plus its share of the common pass.
    const seconds = (now() - t1) / 1000 + common / opts.epsList.length;
    results.push({ eps, keptRows, removedRows, summary, ...(output ? { output } : {}), seconds });
  }
  return results;
}

export async function extractPrunedData(opts: ExtractOptions): Promise<ExtractResult> {
  const { eps, output, ...rest } = opts;
  const [r] = await extractPrunedDataAll({ ...rest, epsList: [eps], ...(output ? { outputs: [output], namedBy: 'user' as const } : {}) });
  return r!;
}

/**
 * Commits step 5 of a run (single or planned): the kept lists (`listOf`: each eps's file) and rows
 * of every eps and the summary, from the committed keep order and M and the ids they name (so that
 * readers can check that the ids they are given are the run's).
 */
export function commitExtract(outputDir: string, epsList: readonly number[], ids: Ids | undefined, listOf: (eps: number) => string = (eps) => outputs.keptList(outputDir, eps)): void {
  const outs: Record<string, string> = { summary: outputs.summary(outputDir) };
  for (const eps of epsList) {
    outs[`kept_eps${eps}`] = listOf(eps);
    outs[`kept_rows_eps${eps}`] = outputs.keptRows(outputDir, eps);
  }
  const inputs: Record<string, string> = { keepOrder: outputs.keepOrder(outputDir), M: outputs.M(outputDir), ...idsInputs(ids) };
  recordStep(outputDir, 'extract', { epsList: [...epsList] }, inputs, outs);
}
