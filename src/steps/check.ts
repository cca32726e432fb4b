// Before the heavy steps: the embeddings are opened once and checked once, and every step then
// works on that one handle. NaN/Inf and all-zero rows are errors. Rows whose L2 norm differs from
// 1 by more than 1e-3: `normalize: auto` refuses them with a message; `always` writes an
// L2-normalised float32 copy into the output folder (native, off the event loop; reused while the
// input is unchanged) and the handle maps that copy; `never` uses the rows as they are.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { NumericError } from '../errors.js';
import { createEmbeddingsFile, embeddingsInputs, openEmbeddings, type Embeddings, type EmbeddingsLayout, type EmbeddingsSpec } from '../embeddings.js';
import { outputs } from '../layout.js';
import { tempPathFor } from '../io/atomic.js';
import { recordStep, stepIsCurrent } from '../manifest.js';
import { loadNative, type ScanStats } from '../native/index.js';
import { ensureOutputDir, runNative, type CommonOptions } from './common.js';

export type NormalizeMode = 'auto' | 'always' | 'never';

/** Largest accepted | ||x|| - 1 | of a row under `normalize: auto`. */
export const NORM_TOLERANCE = 1e-3;

export interface PrepareOptions extends CommonOptions {
  /** The output folder: the check is recorded in its manifest, the normalised copy lives there. */
  outputDir: string;
  normalize: NormalizeMode;
  /** The scan of these embeddings already made (by checkContents, before the folder was locked). */
  scanned?: ScanStats;
}

/** Scans the rows and refuses NaN/Inf, zero rows, and (normalize: auto) rows that are not unit length. Writes nothing. */
async function scanContents(emb: Embeddings, normalize: NormalizeMode, opts: CommonOptions): Promise<ScanStats> {
  const addon = loadNative();
  const r = await runNative(opts, 'check', ({ cancel }) => addon.scanEmbeddings({ emb: emb.native, normTol: NORM_TOLERANCE, threads: opts.threads ?? 0, cancel }));
  if (r.nonfiniteRows > 0)
    throw new NumericError(`${emb.path}: row ${r.firstNonfinite} holds NaN or Inf (${r.nonfiniteRows} such rows)`, { file: emb.path });
  if (r.zeroRows > 0)
    throw new NumericError(`${emb.path}: row ${r.firstZero} is all zeros (${r.zeroRows} such rows); a zero vector has no direction to compare`, { file: emb.path });
  if (r.unnormalizedRows > 0 && normalize === 'auto')
    throw new NumericError(
      `${emb.path}: row ${r.firstUnnormalized} is not L2-normalised (${r.unnormalizedRows} rows have |norm - 1| > ${NORM_TOLERANCE}; norms from ${r.minNorm.toPrecision(6)} to ${r.maxNorm.toPrecision(6)}). ` +
        `SemDeDup compares cosine similarities of unit vectors: set \`normalize: always\` (--normalize always) to normalise them into a copy first, or \`normalize: never\` to use them as they are.`,
      { file: emb.path },
    );
  return r;
}

/**
 * The contents check of prepareEmbeddings, made before anything is created: a command calls it
 * before it creates or locks the output folder, so that bad rows are refused with the folder as it
 * was, and hands the result to prepareEmbeddings (which then does not scan again). Undefined when
 * the folder's manifest already records the check of this very file.
 */
export async function checkContents(spec: EmbeddingsSpec, opts: PrepareOptions): Promise<ScanStats | undefined> {
  const emb = openEmbeddings(spec);
  try {
    if (checkedBefore(emb, opts)) return undefined;
    return await scanContents(emb, opts.normalize, opts);
  } finally {
    emb.close();
  }
}

/** Commits the check of embeddings whose scan `r` passed for `normalize` (no copy needed): a later command does not scan them again. */
export function recordCheck(outputDir: string, layout: EmbeddingsLayout, normalize: NormalizeMode, r: ScanStats): void {
  recordStep(outputDir, 'check', { normalize }, embeddingsInputs(layout), {}, { rows: layout.n, minNorm: r.minNorm, maxNorm: r.maxNorm });
}

/** Whether the folder's manifest records the check of this very file (not with normalize: always, whose copy is made again when stale). */
function checkedBefore(emb: Embeddings, opts: PrepareOptions): boolean {
  return opts.normalize !== 'always' && existsSync(opts.outputDir) && stepIsCurrent(opts.outputDir, 'check', { normalize: opts.normalize }, embeddingsInputs(emb));
}

/**
 * Opens and checks the embeddings for the steps of one output folder and returns the handle that
 * every step uses (the caller closes it). A file already checked (same stamp) for this folder is
 * not read again.
 */
export async function prepareEmbeddings(spec: EmbeddingsSpec, opts: PrepareOptions): Promise<Embeddings> {
  const emb = openEmbeddings(spec);
  try {
    const { outputDir, normalize } = opts;
        if (checkedBefore(emb, opts)) return emb;
    const addon = loadNative();
    const r = opts.scanned ?? (await scanContents(emb, normalize, opts));
    if (r.unnormalizedRows === 0 || normalize === 'never') {
      ensureOutputDir(outputDir);
      recordCheck(outputDir, emb, normalize, r);
      return emb;
    }
    // normalize === 'always'
    ensureOutputDir(outputs.ours(outputDir));
    const copyPath = outputs.normalized(outputDir);
    // The copy is committed with its source (every shard of it) as inputs, so readers see a changed source.
    const params = { n: emb.n, d: emb.d };
    const inputs = embeddingsInputs(emb, 'source');
    if (!(existsSync(copyPath) && stepIsCurrent(outputDir, 'normalize', params, inputs))) {
      opts.log?.(`normalising ${r.unnormalizedRows} rows into ${copyPath}`);
      const tmp = tempPathFor(copyPath);
      const out = createEmbeddingsFile(tmp, emb.n, emb.d, { format: 'memmap', dtype: 'float32' });
      try {
        await runNative(opts, 'normalize', (job) => addon.normalizeRows({ ...job, emb: emb.native, out: out.native, threads: opts.threads ?? 0 }));
        out.close();
      } catch (err) {
        out.close();
        rmSync(tmp, { force: true });
        throw err;
      }
      renameSync(tmp, copyPath);
      recordStep(outputDir, 'normalize', params, inputs, { copy: copyPath });
    }
    emb.close();
    return openEmbeddings({ path: copyPath, format: 'memmap', dtype: 'float32', dim: emb.d, count: emb.n });
  } catch (e) {
    emb.close();
    throw e;
  }
}
