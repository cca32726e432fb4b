// Exact duplicates (SPEC "Exact duplicates"): rows whose stored bytes are identical, found by
// hashing and confirmed byte for byte. The first of each set in keep order is kept. The pass of
// step 4 (exact_duplicates: true) and of `semdedup exact-duplicates` (src/after/exact.ts): the
// search and the `exact` record of the manifest.
import { writeNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { loadNative } from '../native/index.js';
import { embeddingsInputs, type Embeddings } from '../embeddings.js';
import { runNative, type CommonOptions } from './common.js';
import { InputError } from '../errors.js';
import { recordStep } from '../manifest.js';

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

export const exactDuplicatesFile = outputs.exactDuplicates;

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
 * Commits an exact-duplicates pass as the `exact` step: made in the committed keep order
 * (`keepOrder`: its file) or, without one, in row order.
 */
export function commitExact(dir: string, emb: Embeddings, r: ExactDuplicatesResult, keepOrder: boolean): void {
  recordStep(dir, 'exact', { order: keepOrder ? 'keep' : 'rows' }, { ...embeddingsInputs(emb), ...(keepOrder ? { keepOrder: outputs.keepOrder(dir) } : {}) }, { pairs: r.output! },
    { copies: r.copies, groups: r.groups });
}
