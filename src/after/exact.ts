// Exact duplicates (SPEC "Exact duplicates"): rows whose stored bytes are identical, found by
// hashing and confirmed byte for byte. The first of each set in keep order is kept. Identical
// rows have identical vectors, so the semantic step removes the others anyway (M = 1): the pass
// changes no decision, it reports them and writes them to `semdedup/exact_duplicates.npy`
// (an int64 array of (row, first row) pairs).
import { existsSync } from 'node:fs';
import { readNpy } from '../io/npy.js';
import { outputs } from '../layout.js';
import { openEmbeddings, type EmbeddingsSpec } from '../embeddings.js';
import { type CommonOptions } from '../steps/common.js';
import { commitExact, exactDuplicatesFile, findExactDuplicates, type ExactDuplicatesResult } from '../steps/exact.js';
import { InputError } from '../errors.js';
import { loadManifest, requireCommitted, sameRecorded } from '../manifest.js';
import { checkRunEmbeddings, readRun } from './common.js';

export { exactDuplicatesFile, findExactDuplicates, type ExactDuplicatesOptions, type ExactDuplicatesResult } from '../steps/exact.js';

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
    commitExact(dir, emb, r, !!order);
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
