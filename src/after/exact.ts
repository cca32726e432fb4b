// Exact duplicates (SPEC "Exact duplicates"): rows whose stored bytes are identical, found by
// hashing and confirmed byte for byte. The first of each set in keep order is kept. Identical
// rows have identical vectors, so the semantic step removes the others anyway (M = 1): the pass
// changes no decision, it reports them and writes them to `semdedup/exact_duplicates.npy`
// (an int64 array of (row, first row) pairs).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readNpy, writeNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { loadNative } from '../native/index.js';
import { embeddingsInputs, openEmbeddings, type Embeddings, type EmbeddingsSpec } from '../embeddings.js';
import { runNative, type CommonOptions } from '../steps/common.js';
import { InputError } from '../errors.js';
import { loadManifest, recordStep, requireCommitted, sameRecorded } from '../manifest.js';
import { checkRunEmbeddings, readRun } from './common.js';

export interface ExactDuplicatesOptions extends CommonOptions {
  /** The embeddings (an open handle; the caller closes it). */
  embeddings: Embeddings;
  /** Rows in the order that decides which copy is kept (default: row order). Every row once. */
  order?: BigInt64Array;
  /** When given, the pairs are written to `semdedup/exact_duplicates.npy` in this folder. */
  outputDir?: string;
}

export interface ExactDuplicatesResult {
  rows: number;
  /** Sets of at least two identical rows. */
  groups: number;
  /** Rows identical to an earlier row in the order (the ones removed). */
  copies: number;
  /** firstOf[row]: the first row (in the order) with the same bytes, or -1. */
  firstOf: BigInt64Array;
  output?: string;
}

export const exactDuplicatesFile = (dir: string) => join(outputs.ours(dir), 'exact_duplicates.npy');

export async function findExactDuplicates(opts: ExactDuplicatesOptions): Promise<ExactDuplicatesResult> {
  const emb = opts.embeddings;
  {
    const n = emb.n;
    let order = opts.order;
    if (!order) {
      order = new BigInt64Array(n);
      for (let i = 0; i < n; i++) order[i] = BigInt(i);
    }
    if (order.length !== n) throw new InputError(`the order lists ${order.length} rows but ${emb.path} has ${n}`, { file: emb.path });
    const firstOf = new BigInt64Array(n);
    const addon = loadNative();
    const o = order;
    const st = await runNative(opts, 'exact-duplicates', (job) => addon.exactDuplicates({ ...job, emb: emb.native, order: o, firstOf, threads: opts.threads ?? 0 }));
    let output: string | undefined;
    if (opts.outputDir) {
      const pairs = new BigInt64Array(2 * st.copies);
      let q = 0;
      for (let p = 0; p < n; p++) {
        const row = Number(order[p]!);
        if (firstOf[row]! >= 0n) {
          pairs[q++] = BigInt(row);
          pairs[q++] = firstOf[row]!;
        }
      }
      output = exactDuplicatesFile(opts.outputDir);
      writeNpy(output, pairs, { shape: [st.copies, 2] });
    }
    opts.log?.(`exact duplicates: ${st.copies} rows are byte-identical copies of an earlier row (${st.groups} sets)`);
    return { rows: st.rows, groups: st.groups, copies: st.copies, firstOf, ...(output ? { output } : {}) };
  }
}

/**
 * The `exact-duplicates` command on a run's folder: in the committed keep order when the folder
 * has dedup results (refusing, with what to rerun, when they cannot be read or do not belong to
 * these embeddings), in row order only when it has none; the pairs are committed as the `exact` step.
 */
export async function exactDuplicatesOfRun(opts: CommonOptions & { outputDir: string; embeddings: EmbeddingsSpec; want?: Record<string, unknown> }): Promise<ExactDuplicatesResult> {
  const dir = opts.outputDir;
  const { manifest, problem } = loadManifest(dir);
  const hasRun = problem !== undefined || manifest.steps.dedup !== undefined || existsSync(outputs.keepOrder(dir)) || existsSync(outputs.M(dir));
  // No silent fallback: results that are there but cannot be read are an error, not row order.
  const order = hasRun ? readRun(dir, opts.want ?? {}).keepOrder : undefined;
  const emb = openEmbeddings(opts.embeddings);
  try {
    if (order) checkRunEmbeddings(dir, 'dedup', opts.embeddings.path);
    const r = await findExactDuplicates({ ...opts, embeddings: emb, outputDir: dir, ...(order ? { order } : {}) });
    recordStep(dir, 'exact', { order: order ? 'keep' : 'rows' }, { ...embeddingsInputs(emb), ...(order ? { keepOrder: outputs.keepOrder(dir) } : {}) }, { pairs: r.output! },
      { copies: r.copies, groups: r.groups });
    return r;
  } finally {
    emb.close();
  }
}

/**
 * The number of exact copies that the folder's `exact` step committed for its current results, or
 * undefined when none was committed or it belongs to earlier results (other embeddings or keep
 * order); an InputError when the committed file was changed or removed since.
 */
export function committedExactCopies(dir: string): number | undefined {
  const { manifest } = loadManifest(dir);
  const rec = manifest.steps.exact;
  if (!rec) return undefined;
  // Of earlier results: not about this run (sweepStale removes its file).
  const read = rec.inputs.keepOrder;
  const now = manifest.steps.dedup?.outputs.keepOrder;
  if (read && now && !sameRecorded(read, now)) return undefined;
  requireCommitted(dir, 'exact', { pairs: exactDuplicatesFile(dir) });
  const { header, data } = readNpy(exactDuplicatesFile(dir));
  if (!(data instanceof BigInt64Array) || header.shape.length !== 2 || header.shape[1] !== 2)
    throw new InputError(`${exactDuplicatesFile(dir)}: expected int64 (row, first row) pairs; rerun semdedup exact-duplicates`, { file: exactDuplicatesFile(dir) });
  return header.shape[0]!;
}
