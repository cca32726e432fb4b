// SPEC step 5 (the original's extract_pruned_data): for one eps, walk clusters 0..k-1 and
// within each the members in keep order (the order of the original's tables), and write the ids
// of the kept (or removed) members joined by '\n' (no trailing newline, as the original).
// Also writes the kept rows as .npy and the summary per eps as JSON.
import { existsSync } from 'node:fs';
import { InputError } from '../errors.js';
import { atomicWriteFile } from '../io/atomic.js';
import { readNpy, writeNpy } from '../io/npy.js';
import type { Ids } from '../io/ids.js';
import { outputs } from '../layout.js';
import { requireCommitted } from '../manifest.js';
import { now } from './common.js';
import { validateEps, type EpsSummary } from './dedup.js';

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

export async function extractPrunedData(opts: ExtractOptions): Promise<ExtractResult> {
  const t0 = now();
  const dir = opts.outputDir;
  validateEps([opts.eps]);
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
  const t = 1 - opts.eps;
  let nKept = 0;
  for (let i = 0; i < M.length; i++) if (!(M[i]! > t)) nKept++;
  const keptRows = new BigInt64Array(nKept);
  const removedRows = new BigInt64Array(M.length - nKept);
  let a = 0;
  let r = 0;
  for (let i = 0; i < M.length; i++) {
    if (M[i]! > t) removedRows[r++] = keepOrder[i]!;
    else keptRows[a++] = keepOrder[i]!;
  }
  writeNpy(outputs.keptRows(dir, opts.eps), keptRows);
  if (opts.output) {
    const rows = opts.removed ? removedRows : keptRows;
    const ids = opts.ids;
    const chunks: string[] = [];
    let buf: string[] = [];
    for (let i = 0; i < rows.length; i++) {
      const row = Number(rows[i]!);
      buf.push(ids ? ids.get(row) : String(row));
      if (buf.length === 65536) {
        chunks.push(buf.join('\n'));
        buf = [];
      }
    }
    if (buf.length) chunks.push(buf.join('\n'));
    atomicWriteFile(opts.output, chunks.join('\n'));
  }
  const summary: EpsSummary = { eps: opts.eps, kept: nKept, removed: M.length - nKept, keptFraction: M.length ? nKept / M.length : 1 };
  opts.log?.(`eps ${opts.eps}: kept ${summary.kept} of ${M.length} (${(100 * summary.keptFraction).toFixed(2)}%), removed ${summary.removed}`);
  return { eps: opts.eps, keptRows, removedRows, summary, ...(opts.output ? { output: opts.output } : {}), seconds: (now() - t0) / 1000 };
}
