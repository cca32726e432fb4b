// Inputs as users hold them, made ready for the engine: Parquet embeddings, Parquet ids and a
// Parquet ranking column are converted once (importParquet) into the output folder's
// `semdedup/import/`, recorded in its manifest with the stamps of every source file, and reused
// while those are unchanged; the config then names the converted files, which every step maps.
// Also what a config names as a run's inputs, for every executor: the embeddings' spec and the
// ids (read and checked once per command).
import { existsSync, rmdirSync, rmSync } from 'node:fs';
import { keyName, requireKeys, type PartialResolved, type RankBy } from './config.js';
import { ConfigError, InputError } from './errors.js';
import { isParquetFile, resolveInputFiles, sourceName } from './io/inputs.js';
import { makeDir, refuseLinks } from './io/atomic.js';
import { outputs } from './layout.js';
import { checkRunEmbeddings, matches, readManifest, recordStep, requireCommitted, requireSameInputs, stamp, stepIsCurrent } from './manifest.js';
import { checkContents, recordCheck } from './steps/check.js';
import { embeddingsLayout, type EmbeddingsSpec } from './embeddings.js';
import { checkUniqueIds, readIdsFrom, type Ids } from './io/ids.js';
import { readNpy } from './io/npy.js';
import type { RankValues } from './steps/dedup.js';

/** Where the converted inputs live in an output folder. */
export const imported = {
  dir: outputs.importDir,
  embeddings: outputs.importedEmbeddings,
  ids: outputs.importedIds,
  rank: outputs.importedRank,
};

function parquetSource(source: string | string[] | undefined, format: string | undefined, key: string): string[] | undefined {
  if (source === undefined) return undefined;
  if (format !== undefined && format !== 'auto' && format !== 'parquet') return undefined;
  let files: string[];
  try {
    files = resolveInputFiles(source, key, key);
  } catch {
    return undefined; // not there: the usual checks say so
  }
  // Parquet by its magic bytes, or by its name (then a file without the magic is refused as not Parquet).
  const parquet = files.filter((f) => existsSync(f) && (isParquetFile(f) || (format !== 'parquet' && f.toLowerCase().endsWith('.parquet'))));
  if (format === 'parquet' || parquet.length === files.length) {
    if (parquet.length !== files.length) {
      const bad = files.find((f) => !parquet.includes(f))!;
      throw new InputError(`${bad}: not a Parquet file (it does not start and end with the magic bytes PAR1)`, { file: bad, key });
    }
    return files;
  }
  if (parquet.length > 0) throw new InputError(`${parquet[0]}: a Parquet file among other files; give one format`, { file: parquet[0], key });
  return undefined;
}

/** The Parquet files of the ranking column (`rank_by`): the Parquet ids, else the Parquet embeddings. */
function rankSource(cfg: PartialResolved, embFiles: string[] | undefined, idsFiles: string[] | undefined): string[] | undefined {
  if (!cfg.rankBy) return undefined;
  const files = idsFiles ?? embFiles;
  if (!files)
    throw new ConfigError(`rank_by: the column '${cfg.rankBy.column}' is read from Parquet ids or Parquet embeddings, and neither is Parquet`, { key: 'rank_by' });
  return files;
}

export interface PrepareInputsOptions {
  threads?: number;
  log?: (line: string) => void;
  onProgress?: (p: { stage: string; done: number; total: number }) => void;
  signal?: AbortSignal;
  /**
   * Convert when the converted files are missing or out of date (default). false, for the commands
   * that read a finished run: never write; converted files that are not current (a changed Parquet
   * source) are refused, naming what changed and what to rerun.
   */
  convert?: boolean;
}

/**
 * Converts the Parquet inputs of a config into the output folder (once; reused while unchanged)
 * and returns the config naming the converted files. A config without Parquet inputs and without
 * `rank_by` is returned as it is. A bad file is refused before anything is written: the footers
 * are checked first, the rows while converting, and on a refusal every file and folder the
 * conversion created is removed.
 */
export async function prepareInputs(cfg: PartialResolved, opts: PrepareInputsOptions = {}): Promise<PartialResolved> {
  const embFiles = parquetSource(cfg.embeddings, cfg.embeddingsFormat, 'embeddings');
  let idsFiles = parquetSource(cfg.ids, cfg.idsFormat, 'ids');
  if (!cfg.ids && embFiles && cfg.idsColumn) idsFiles = await withColumn(embFiles, cfg.idsColumn) ? embFiles : undefined;
  const rankFiles = rankSource(cfg, embFiles, idsFiles);
  if (!embFiles && !idsFiles && !rankFiles) return cfg;
  if (!cfg.outputDir) throw new ConfigError('Parquet inputs are converted into the output folder: set `output_dir`', { key: 'output_dir' });
  const out = cfg.outputDir;
  const rank = cfg.rankBy as RankBy | undefined;
  const embeddingsColumn = cfg.embeddingsColumn ?? 'embedding';
  const idsColumn = cfg.idsColumn ?? 'id';
  // Rows of each embeddings shard (not Parquet): the Parquet ids and ranking column must match them.
  const npyLayout = !embFiles && cfg.embeddings ? embeddingsLayout({ path: cfg.embeddings, format: cfg.embeddingsFormat as 'auto', dtype: cfg.embeddingsDtype, ...(cfg.dim !== undefined ? { dim: cfg.dim } : {}) }) : undefined;
  const params = {
    embeddings: embFiles ? { column: embeddingsColumn } : null,
    ids: idsFiles ? { column: idsColumn } : null,
    rank: rankFiles && rank ? { column: rank.column } : null,
    rows: npyLayout ? npyLayout.shards?.map((s) => s.n) ?? [npyLayout.n] : null,
  };
  const inputs: Record<string, string> = {};
  embFiles?.forEach((f, i) => (inputs[`embeddings.${i}`] = f));
  idsFiles?.forEach((f, i) => (inputs[`ids.${i}`] = f));
  rankFiles?.forEach((f, i) => (inputs[`rank.${i}`] = f));
  const next: PartialResolved = { ...cfg };
  if (embFiles) Object.assign(next, { embeddings: imported.embeddings(out), embeddingsFormat: 'npy' });
  if (idsFiles) Object.assign(next, { ids: imported.ids(out), idsFormat: 'text' });
  if (existsSync(outputs.manifest(out)) && stepIsCurrent(out, 'import', params, inputs)) return next;
  if (opts.convert === false) {
    requireCommitted(out, 'import', {}, params);
    throw new InputError(`${imported.dir(out)}: the Parquet inputs of this config are not the ones converted for the run in ${out} (other files or columns); give the run's config, or rerun semdedup run`, { file: imported.dir(out), key: 'embeddings' });
  }

  // Converted before the output folder is locked: never through a link planted in the engine's folder.
  refuseLinks(outputs.ours(out));
  const created: string[] = [];
  for (const d of [out, outputs.ours(out), imported.dir(out)]) if (!existsSync(d)) created.push(d);
  makeDir(imported.dir(out));
  const outs: Record<string, string> = {};
  if (embFiles) outs.embeddings = imported.embeddings(out);
  if (idsFiles) outs.ids = imported.ids(out);
  if (rankFiles && rank) outs.rank = imported.rank(out, rank.column);
  // What was there before (an earlier conversion), left in place if this one fails before replacing it.
  const before = Object.fromEntries(Object.entries(outs).filter(([, f]) => existsSync(f)).map(([k, f]) => [k, stamp(f)]));
  try {
    opts.log?.(`converting the Parquet inputs into ${imported.dir(out)}`);
    const { importParquet } = await import('./io/parquet.js');
    const r = await importParquet({
      ...(embFiles ? { embeddings: { files: embFiles, column: embeddingsColumn, out: imported.embeddings(out) } } : {}),
      ...(idsFiles ? { ids: { files: idsFiles, column: idsColumn, out: imported.ids(out) } } : {}),
      ...(rankFiles && rank ? { columns: { files: rankFiles, columns: [{ column: rank.column, out: imported.rank(out, rank.column) }] } } : {}),
      ...(npyLayout ? { rows: npyLayout.n, ...(npyLayout.shards ? { shardRows: npyLayout.shards.map((s) => s.n) } : {}) } : {}),
      ...(opts.threads ? { threads: opts.threads } : {}),
      ...(opts.onProgress ? { onProgress: (done: number, total: number) => opts.onProgress!({ stage: 'import', done, total }) } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    // The converted rows' contents (NaN, zero rows, rows not of unit length under normalize:
    // auto) are checked now, so that a refusal leaves nothing behind; a passed check is committed
    // (the steps do not scan again).
    if (embFiles) {
      const normalize = cfg.normalize ?? 'auto';
      const spec = { path: imported.embeddings(out), format: 'npy' as const };
      const scan = await checkContents(spec, { outputDir: out, normalize, ...(opts.threads ? { threads: opts.threads } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
      if (scan && (scan.unnormalizedRows === 0 || normalize === 'never')) recordCheck(out, embeddingsLayout(spec), normalize, scan);
    }
    recordStep(out, 'import', params, inputs, outs, { rows: r.n, ...(r.d !== undefined ? { d: r.d, dtype: r.dtype, seconds: r.embeddingsSeconds, payloadBytes: r.payloadBytes } : {}) });
    if (r.embeddingsSeconds) opts.log?.(`import: ${r.n} rows × ${r.d} (${r.dtype}) in ${r.embeddingsSeconds.toFixed(1)} s, ${(r.payloadBytes! / r.embeddingsSeconds / 1e6).toFixed(0)} MB/s of float payload`);
  } catch (e) {
    // Leave the folder as it was: remove what the conversion wrote (the converted files, complete
    // only when their rows were refused afterwards) and the folders it created.
    for (const [k, f] of Object.entries(outs)) if (!(before[k] && matches(before[k], f))) rmSync(f, { force: true });
    for (const d of created.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        // not empty: something else wrote there
      }
    }
    throw e;
  }
  return next;
}

async function withColumn(files: string[], column: string): Promise<boolean> {
  const { openParquetReader, describeParquet } = await import('./io/parquet.js');
  const r = await openParquetReader(1);
  try {
    return (await describeParquet(r.con, files[0]!)).columns.has(column);
  } finally {
    r.close();
  }
}

/** The ranking column converted by prepareInputs, when `rank_by` is set (read from the output folder). */
export function rankValuesOf(cfg: PartialResolved): RankValues | undefined {
  if (!cfg.rankBy || !cfg.outputDir) return undefined;
  const rb = cfg.rankBy as RankBy;
  const file = imported.rank(cfg.outputDir, rb.column);
  if (!existsSync(file))
    throw new InputError(`${file} not found: rank_by '${rb.column}' is converted from the Parquet inputs when a command reads the config`, { file, key: 'rank_by' });
  const { data } = readNpy(file);
  if (!(data instanceof Float64Array)) throw new InputError(`${file}: expected float64 values`, { file, key: 'rank_by' });
  return { column: rb.column, order: rb.order, values: data, file };
}

/** The embeddings a config names, as the readers take them. */
export function embeddingsSpecOf(cfg: PartialResolved): EmbeddingsSpec {
  const c = requireKeys(cfg, ['embeddings'], 'this step');
  return {
    path: c.embeddings,
    format: c.embeddingsFormat,
    dtype: c.embeddingsDtype,
    ...(c.datasetSize !== undefined ? { count: c.datasetSize } : {}),
    ...(c.dim !== undefined ? { dim: c.dim } : {}),
    ...(c.names ? { names: { dim: keyName(c, 'dim'), count: keyName(c, 'dataset_size') } } : {}),
  };
}

/**
 * The ids (checked unique): the config's ids file, else the one recorded in the output folder's
 * manifest by an earlier step (the original's semdedup_configs.yaml names none); undefined means
 * row numbers. Read once per command and handed to the steps that write ids.
 */
export function resolveIds(cfg: PartialResolved, outputDir: string | undefined, log?: (l: string) => void, opts: { verify?: boolean } = {}): Ids | undefined {
  const src = cfg.ids ? { ids: cfg.ids, format: cfg.idsFormat, dtype: cfg.idsDtype } : outputDir ? recordedIds(outputDir) : undefined;
  if (opts.verify && outputDir) {
    // A reader of a finished run: the embeddings and the ids it is given must be the run's
    // (checked before anything is read from them, so the message says what changed).
    if (cfg.embeddings) checkRunEmbeddings(outputDir, 'dedup', cfg.embeddings);
    if (src) requireSameInputs(outputDir, 'extract', 'ids', resolveInputFiles(src.ids, 'ids', 'ids'), 'ids');
  }
  if (!src) return undefined;
  const present = cfg.embeddings && (typeof cfg.embeddings !== 'string' || /[*?[]/.test(cfg.embeddings) || existsSync(cfg.embeddings));
  const layout = present ? embeddingsLayout(embeddingsSpecOf(cfg)) : undefined;
  const n = layout ? layout.n : cfg.datasetSize;
  const ids = readIdsFrom(src.ids, {
    format: src.format, ...(src.dtype ? { dtype: src.dtype } : {}), ...(n !== undefined ? { count: n } : {}),
    ...(layout?.shards && resolveInputFiles(src.ids, 'ids', 'ids').length > 1 ? { shardCounts: layout.shards.map((s) => s.n) } : {}),
  });
  const name = sourceName(src.ids);
  checkUniqueIds(ids, name);
  log?.(`ids: ${name}`);
  return ids;
}

/** The ids file recorded in the output folder's manifest by an earlier step, if any. */
function recordedIds(outputDir: string): { ids: string | string[]; format: 'auto' | 'memmap' | 'npy' | 'text'; dtype?: string } | undefined {
  const m = readManifest(outputDir);
  const ids = m.config?.ids;
  if (ids === undefined || ids === null) return undefined;
  if (!(typeof ids === 'string' || (Array.isArray(ids) && ids.length > 0 && ids.every((f) => typeof f === 'string')))) return undefined;
  // Every file of the recorded ids (a glob or folder as it was given) must still be there.
  const files = resolveInputFiles(ids as string | string[], 'ids', 'ids');
  const gone = files.find((f) => !existsSync(f));
  if (gone !== undefined)
    throw new InputError(`${gone}: the ids file that ${outputs.manifest(outputDir)} records for this run is missing; restore it, or give the ids (ids: in the config, --set ids=...)`, { file: gone });
  const format = (m.config?.ids_format as 'auto' | 'memmap' | 'npy' | 'text' | undefined) ?? 'auto';
  const dtype = m.config?.ids_dtype as string | undefined;
  return { ids: ids as string | string[], format, ...(dtype ? { dtype } : {}) };
}
