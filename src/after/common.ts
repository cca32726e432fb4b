// What the commands that work from a finished run share: the stored step-4 arrays of an output
// folder, the thresholds the dedup step recorded, and the float64 re-check of M near any other
// threshold (the numerical contract of docs/algorithm.md holds for every eps, not only those of `eps_list`).
import { existsSync } from 'node:fs';
import { ConfigError, InputError } from '../errors.js';
import { readNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { readManifest, requireCommitted, requireSameInputs } from '../manifest.js';
import type { Ids } from '../io/ids.js';
import { loadNative } from '../native/index.js';
import { thresholdsOf, validateOneEps } from '../decision.js';
import { embeddingsFiles, type EmbeddingsSpec } from '../embeddings.js';
import { runNative, type CommonOptions } from '../steps/common.js';
import { prepareEmbeddings } from '../steps/check.js';

/** Options shared by the functions that read a finished output folder. */
export interface RunFolderOptions extends CommonOptions {
  /** The output folder of a run (its `semdedup/` files). */
  outputDir: string;
  /**
   * The embeddings of the run: needed for the float64 re-check of an eps that the dedup step did
   * not record (and for decontamination); not needed for a recorded eps.
   */
  embeddings?: EmbeddingsSpec;
  normalize?: 'auto' | 'always' | 'never';
  /** Params the dedup step must have run with (e.g. whichToKeep) for its files to be read. */
  want?: Record<string, unknown>;
}

/** Step 4's stored arrays, per keep-order position. */
export interface RunArrays {
  /** Rows in keep order, cluster by cluster. */
  keepOrder: BigInt64Array;
  /** Cluster c is positions [offsets[c], offsets[c+1]). */
  offsets: BigInt64Array;
  /** M per position (float64 near the recorded thresholds). */
  M: Float64Array;
  /** The earlier row that reached M, or -1. */
  Mrow: BigInt64Array;
  /** The eps values whose thresholds the dedup step re-checked (empty when unknown). */
  recordedEps: number[];
}

/** Reads M, M_row, the keep order and the cluster offsets of a finished dedup step. */
export function readRun(outputDir: string, want: Record<string, unknown> = {}): RunArrays {
  const files = [outputs.keepOrder(outputDir), outputs.offsets(outputDir), outputs.M(outputDir), outputs.Marg(outputDir)];
  for (const p of files) if (!existsSync(p)) throw new InputError(`${p} not found: run the dedup step first (semdedup dedup)`, { file: p });
  // Only the keep order, M and M_row that the dedup step committed together (for the requested
  // params), over the cluster order it read.
  requireCommitted(outputDir, 'dedup', { keepOrder: files[0]!, M: files[2]!, Mrow: files[3]! }, want);
  const keepOrder = readNpy(files[0]!).data as BigInt64Array;
  const offsets = readNpy(files[1]!).data as BigInt64Array;
  const M = readNpy(files[2]!).data as Float64Array;
  const Mrow = readNpy(files[3]!).data as BigInt64Array;
  if (!(keepOrder instanceof BigInt64Array) || !(offsets instanceof BigInt64Array) || !(M instanceof Float64Array) || !(Mrow instanceof BigInt64Array))
    throw new InputError(`${outputs.ours(outputDir)}: keep_order, cluster_offsets, M_row must be int64 and M float64; rerun semdedup dedup`, { file: outputs.ours(outputDir) });
  const n = keepOrder.length;
  if (M.length !== n || Mrow.length !== n || offsets.length < 1 || Number(offsets[offsets.length - 1]!) !== n)
    throw new InputError(`${outputs.ours(outputDir)}: M (${M.length}), M_row (${Mrow.length}), keep_order (${n}) and the cluster offsets disagree; rerun semdedup dedup`, {
      file: outputs.M(outputDir),
    });
  return { keepOrder, offsets, M, Mrow, recordedEps: recordedEps(outputDir) };
}

/**
 * Ids for the lists of a run's folder: when the run wrote its lists with an ids file, the ids given
 * must be that file unchanged (a swapped or edited line would name the wrong rows).
 */
export function checkRunIds(outputDir: string, ids: Ids | undefined): void {
  if (!ids || ids.source === 'rows') return;
  const files = ids.files ?? (ids.file ? [ids.file] : []);
  if (files.length) requireSameInputs(outputDir, 'extract', 'ids', files, 'ids');
}

export { checkRunEmbeddings } from '../manifest.js';

/** The eps list of the dedup step recorded in the manifest (whose thresholds were re-checked). */
export function recordedEps(outputDir: string): number[] {
  const params = readManifest(outputDir).steps.dedup?.params;
  const list = params?.epsList;
  return Array.isArray(list) ? list.filter((e): e is number => typeof e === 'number') : [];
}

export interface RecheckResult extends RunArrays {
  /** Members whose M was recomputed in float64 (0 when every eps was recorded). */
  rechecked: number;
  /** The eps values that were not recorded and were re-checked. */
  recheckedEps: number[];
  /** The distance from each re-checked threshold within which M is now float64 (0: none re-checked). */
  margin: number;
}

/** The core's re-check margin for dimension d (maxsim.hpp: a few float32 roundings per term, at least 1e-5). */
export function defaultRecheckMargin(d: number): number {
  return loadNative().recheckMargin({ d });
}

/**
 * M and M_row valid for deciding at every eps of `epsList`: for an eps that the dedup step did not
 * record, every member whose stored M lies within the re-check margin of 1 − eps gets M and M_row
 * recomputed in float64 over the earlier members of its cluster (a native async call). The stored
 * files are not changed; the result holds copies when anything was re-checked.
 */
export async function recheckEps(opts: RunFolderOptions & { eps: number[]; run?: RunArrays; marginScale?: number }): Promise<RecheckResult> {
  for (const e of opts.eps) validateOneEps(e);
  const run = opts.run ?? readRun(opts.outputDir, opts.want);
  const missing = opts.eps.filter((e) => !run.recordedEps.some((r) => r === e));
  if (missing.length === 0) return { ...run, rechecked: 0, recheckedEps: [], margin: 0 };
  if (!opts.embeddings)
    throw new ConfigError(
      `eps ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not among the thresholds recorded by the dedup step (${run.recordedEps.join(', ') || 'none'}): ` +
        'deciding at it needs the float64 re-check of the members near it, which needs the embeddings (give the config with `embeddings`)',
      { key: 'embeddings' },
    );
  const emb = await prepareEmbeddings(opts.embeddings, { ...opts, normalize: opts.normalize ?? 'auto' });
  try {
    // The re-check compares the rows the dedup step compared: the embeddings must be those.
    requireSameInputs(opts.outputDir, 'dedup', 'embeddings', embeddingsFiles(emb), 'embeddings');
    for (let i = 0; i < run.keepOrder.length; i++) {
      const r = run.keepOrder[i]!;
      if (r < 0n || r >= BigInt(emb.n))
        throw new InputError(`${outputs.keepOrder(opts.outputDir)}: row ${r} is outside the ${emb.n} rows of ${emb.path}`, { file: outputs.keepOrder(opts.outputDir) });
    }
    const M = Float64Array.from(run.M);
    const Mrow = BigInt64Array.from(run.Mrow);
    const addon = loadNative();
    const margin = defaultRecheckMargin(emb.d) * Math.max(1, opts.marginScale ?? 1);
    const r = await runNative(opts, 'recheck', ({ cancel }) =>
      addon.recheckThresholds({ emb: emb.native, order: run.keepOrder, offsets: run.offsets, M, arg: Mrow, thresholds: thresholdsOf(missing), threads: opts.threads ?? 0, recheckMargin: margin, cancel }),
    );
    opts.log?.(`eps ${missing.join(', ')}: ${r.rechecked} members near the threshold re-checked in float64`);
    return { ...run, M, Mrow, rechecked: r.rechecked, recheckedEps: missing, margin };
  } finally {
    emb.close();
  }
}

/** The cluster of every keep-order position. */
export function clusterOfPositions(offsets: BigInt64Array): Int32Array {
  const n = Number(offsets[offsets.length - 1]!);
  const out = new Int32Array(n);
  for (let c = 0; c + 1 < offsets.length; c++) out.fill(c, Number(offsets[c]!), Number(offsets[c + 1]!));
  return out;
}

/**
 * A text field of a CSV the engine writes: a field that a spreadsheet would read as a formula
 * (starting with = + - @, a tab or a carriage return) gets a leading ' (OWASP's CSV injection
 * rule), then the field is quoted when it needs it (RFC 4180). Ids are data, never formulas.
 */
export function csvField(s: string): string {
  const t = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
}

/** Buffers lines and writes them in large chunks to a writer. */
export class LineSink {
  private buf: string[] = [];
  constructor(private readonly write: (chunk: string) => void) {}
  push(line: string): void {
    this.buf.push(line);
    if (this.buf.length >= 65536) this.flush();
  }
  flush(): void {
    if (this.buf.length) this.write(this.buf.join('\n') + '\n');
    this.buf = [];
  }
}

export type TableFormat = 'csv' | 'jsonl';

/** 'jsonl' for .jsonl/.json/.ndjson file names, else 'csv'. */
export function formatFor(file: string | undefined, given?: TableFormat): TableFormat {
  if (given) return given;
  return file && /\.(jsonl|ndjson|json)$/i.test(file) ? 'jsonl' : 'csv';
}
