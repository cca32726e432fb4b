// Opening embeddings: the original's raw float32 memmap (N and D from the config, or D given and
// N derived from the file size), or .npy float32/float16. The bytes are mapped by the native
// core and never copied; `view()` gives a zero-copy typed array over them.
import { closeSync, constants, existsSync, openSync, readSync, statSync, ftruncateSync, writeSync } from 'node:fs';
import { InputError, OutputError, SemDedupError } from './errors.js';
import { isParquetFile, resolveInputFiles, sourceName } from './io/inputs.js';
import { fileInputs, stamp, type FileStamp } from './manifest.js';
import { NPY_MAGIC, npyHeaderBytes, readNpyHeaderFromFile } from './io/npy.js';
import { loadNative, type NativeEmbeddings } from './native/index.js';

export type EmbeddingsFormat = 'auto' | 'memmap' | 'npy' | 'parquet';
export type EmbeddingsDtype = 'float32' | 'float16';

export interface EmbeddingsSpec {
  /**
   * The embeddings: one file (raw memmap or .npy), or shards read as one dataset in order: a list
   * of files, a glob (`img_emb/img_emb_*.npy`; wildcards in the file name only) or a folder
   * (its files sorted by name).
   */
  path: string | readonly string[];
  /** 'auto' (default): .npy when the file starts with the .npy magic, else a raw memmap. */
  format?: EmbeddingsFormat;
  /** Element type of a raw memmap (default float32); a .npy header decides for itself. */
  dtype?: EmbeddingsDtype;
  /** Number of rows N (`dataset_size`), of all shards together; for a raw memmap derived from the size when absent. */
  count?: number;
  /** Dimension D (`emb_size` / `emd_size`); required for a raw memmap. */
  dim?: number;
  /** The names the config gave `dim` and `count` by (e.g. `emb_size`, `dataset_size`), for messages. */
  names?: { dim?: string; count?: string };
}

/** One file of the embeddings: `n` rows from byte `offset`. */
export interface ShardLayout {
  path: string;
  format: 'memmap' | 'npy';
  n: number;
  offset: number;
}

export interface Embeddings extends EmbeddingsLayout {
  /** The native mapping (passed to the native steps). */
  readonly native: NativeEmbeddings;
  /** Zero-copy typed array over all rows (Float32Array, or Uint16Array of float16 bits); one file only. */
  view(): Float32Array | Uint16Array;
  /** A float32 copy of rows [begin, end). */
  rows(begin: number, end: number): Float32Array;
  close(): void;
}

function isNpy(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(6);
    const got = readSync(fd, b, 0, 6, 0);
    return got === 6 && b.equals(NPY_MAGIC);
  } finally {
    closeSync(fd);
  }
}

/** A header dictionary near the start without the magic: a .npy whose first bytes were damaged. */
function looksLikeDamagedNpy(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(256);
    const got = readSync(fd, b, 0, 256, 0);
    const head = b.subarray(0, got).toString('latin1');
    return head.includes("{'descr':") && head.includes("'shape':");
  } finally {
    closeSync(fd);
  }
}

export interface EmbeddingsLayout {
  /** The file; for shards, the source as given (folder, glob, or the first file of a list). */
  path: string;
  format: 'memmap' | 'npy';
  dtype: EmbeddingsDtype;
  n: number;
  d: number;
  /** Byte offset of the first row in the file (one file). */
  offset: number;
  /** Present when the rows come from several files: each in order, its rows following the previous ones'. */
  shards?: ShardLayout[];
}

/**
 * Works out the layout of the embeddings (one file or shards) and checks it against the config,
 * without mapping it. Every shard is checked (header, dtype, D, size) before anything is read,
 * and an error names the shard.
 */
export function embeddingsLayout(spec: EmbeddingsSpec): EmbeddingsLayout {
  if (!spec.path || (Array.isArray(spec.path) && spec.path.length === 0))
    throw new InputError('no embeddings file given (`embeddings`, or `emb_memory_loc` in the original config)', { key: 'embeddings' });
  const files = resolveInputFiles(spec.path);
  if (files.length === 1 && typeof spec.path === 'string' && files[0] === spec.path) return fileLayout({ ...spec, path: files[0]! });
  const shards: ShardLayout[] = [];
  let first: EmbeddingsLayout | undefined;
  let n = 0;
  const { count: _count, ...each } = spec;
  files.forEach((file, i) => {
    const where = `shard ${i + 1} of ${files.length}`;
    let l: EmbeddingsLayout;
    try {
      l = fileLayout({ ...each, path: file });
    } catch (e) {
      if (e instanceof InputError) throw new InputError(`${e.message} (${where} of ${sourceName(spec.path)})`, { file, key: 'embeddings', cause: e });
      throw e;
    }
    if (!first) first = l;
    else if (l.d !== first.d)
      throw new InputError(`${file}: rows of ${l.d} values, but ${first.path} (the first shard) has ${first.d} (${where} of ${sourceName(spec.path)})`, { file, key: 'embeddings' });
    else if (l.dtype !== first.dtype)
      throw new InputError(`${file}: ${l.dtype} values, but ${first.path} (the first shard) holds ${first.dtype}; all shards must have one dtype (${where} of ${sourceName(spec.path)})`, { file, key: 'embeddings' });
    shards.push({ path: file, format: l.format, n: l.n, offset: l.offset });
    n += l.n;
  });
  const f = first!;
  if (spec.count !== undefined && spec.count !== n)
    throw new InputError(`${sourceName(spec.path)}: the config says ${spec.names?.count ?? 'dataset_size'} ${spec.count} but the ${files.length} shards hold ${n} rows`, { file: f.path, key: 'dataset_size' });
  return { path: sourceName(spec.path), format: f.format, dtype: f.dtype, n, d: f.d, offset: 0, shards };
}

/** The layout of one embeddings file. */
function fileLayout(spec: EmbeddingsSpec & { path: string }): EmbeddingsLayout {
  const { path } = spec;
  if (!path) throw new InputError('no embeddings file given (`embeddings`, or `emb_memory_loc` in the original config)', { key: 'embeddings' });
  if (!existsSync(path)) throw new InputError(`${path}: embeddings file not found`, { file: path, key: 'embeddings' });
  const st = statSync(path);
  if (!st.isFile()) throw new InputError(`${path}: embeddings path is not a regular file`, { file: path });
  if (spec.format === 'parquet' || ((spec.format ?? 'auto') === 'auto' && isParquetFile(path)))
    throw new InputError(
      `${path}: a Parquet file is converted once into a mapped .npy before the engine reads it: run the command with a config (it converts into the output folder), or \`semdedup import\` / prepareInputs() first`,
      { file: path, key: 'embeddings' },
    );
  const format = spec.format && spec.format !== 'auto' ? spec.format : isNpy(path) ? 'npy' : 'memmap';
  if (format === 'memmap' && looksLikeDamagedNpy(path))
    throw new InputError(`${path}: the file holds a .npy header dictionary but not the .npy magic bytes (\\x93NUMPY): a corrupt .npy file? (set embeddings_format: memmap if it really is a raw memmap)`, { file: path });
  if (format === 'npy') {
    const h = readNpyHeaderFromFile(path);
    const dt = h.descr === '<f4' ? 'float32' : h.descr === '<f2' ? 'float16' : undefined;
    if (!dt)
      throw new InputError(`${path}: embeddings must be float32 ('<f4') or float16 ('<f2'), the .npy header says '${h.descr}'`, { file: path });
    if (h.shape.length !== 2)
      throw new InputError(`${path}: embeddings must be a 2-D array (N, D), the .npy header says shape (${h.shape.join(', ')})`, { file: path });
    const [n, d] = h.shape as [number, number];
    if (spec.dim !== undefined && spec.dim !== d)
      throw new InputError(`${path}: the config says ${spec.names?.dim ?? 'dim'} ${spec.dim} but the .npy holds rows of ${d} values`, { file: path, key: 'dim' });
    if (spec.count !== undefined && spec.count !== n)
      throw new InputError(`${path}: the config says ${spec.names?.count ?? 'dataset_size'} ${spec.count} but the .npy holds ${n} rows`, { file: path, key: 'dataset_size' });
    return { path, format, dtype: dt, n, d, offset: h.dataOffset };
  }
  const dtype = spec.dtype ?? 'float32';
  const item = dtype === 'float32' ? 4 : 2;
  if (spec.dim === undefined || !(spec.dim > 0))
    throw new InputError(`${path}: a raw memmap needs the row size D (\`dim\`, or emb_size / emd_size in the original config)`, { file: path, key: 'dim' });
  const d = spec.dim;
  const rowBytes = d * item;
  if (spec.count !== undefined) {
    const expect = spec.count * rowBytes;
    if (st.size !== expect)
      throw new InputError(
        `${path}: file size ${st.size} bytes does not match ${spec.names?.count ?? 'dataset_size'} ${spec.count} × ${spec.names?.dim ?? 'dim'} ${d} × ${item} bytes (${dtype}) = ${expect} bytes` +
          (st.size % rowBytes === 0 ? ` (the file holds ${st.size / rowBytes} rows)` : ''),
        { file: path, key: 'dataset_size' },
      );
    return { path, format, dtype, n: spec.count, d, offset: 0 };
  }
  if (st.size % rowBytes !== 0)
    throw new InputError(`${path}: file size ${st.size} bytes is not a multiple of the row size ${d} × ${item} bytes (${dtype}); is ${spec.names?.dim ?? 'dim'} right?`, { file: path, key: 'dim' });
  return { path, format, dtype, n: st.size / rowBytes, d, offset: 0 };
}

/** The files the rows come from, in order. */
export function embeddingsFiles(layout: EmbeddingsLayout): string[] {
  return layout.shards ? layout.shards.map((s) => s.path) : [layout.path];
}

/**
 * The embeddings as inputs of a step in the manifest: `embeddings` (or `name`) for one file; for
 * shards, each shard by itself (`embeddings.0`, `embeddings.1`, …), stamped like a single file.
 */
export function embeddingsInputs(layout: EmbeddingsLayout, name = 'embeddings'): Record<string, string> {
  return fileInputs(name, embeddingsFiles(layout), !!layout.shards);
}

/** The stamp of the embeddings' file, or of each shard (what a step's results depend on). */
export function embeddingsStamp(layout: EmbeddingsLayout): FileStamp | FileStamp[] {
  return layout.shards ? layout.shards.map((s) => stamp(s.path)) : stamp(layout.path);
}

/** The shards holding rows [begin, end) of a layout, cut to that range (offsets and counts adjusted). */
export function shardsOfRange(layout: EmbeddingsLayout, begin: number, end: number): ShardLayout[] {
  const rowBytes = layout.d * (layout.dtype === 'float32' ? 4 : 2);
  const all = layout.shards ?? [{ path: layout.path, format: layout.format, n: layout.n, offset: layout.offset }];
  const out: ShardLayout[] = [];
  let row0 = 0;
  for (const s of all) {
    const b = Math.max(begin, row0);
    const e = Math.min(end, row0 + s.n);
    if (e > b) out.push({ path: s.path, format: s.format, n: e - b, offset: s.offset + (b - row0) * rowBytes });
    row0 += s.n;
  }
  return out;
}

/** A read-only mapping of rows [begin, end) of a layout (a planned run's task range), across shard boundaries. */
export function openRowRange(layout: EmbeddingsLayout, begin: number, end: number): NativeEmbeddings {
  const addon = loadNative();
  const parts = shardsOfRange(layout, begin, end);
  try {
    if (parts.length === 1) return new addon.Embeddings({ path: parts[0]!.path, offset: parts[0]!.offset, n: end - begin, d: layout.d, dtype: layout.dtype, writable: false });
    return new addon.Embeddings({ shards: parts.map((p) => ({ path: p.path, offset: p.offset, n: p.n })), d: layout.d, dtype: layout.dtype });
  } catch (e) {
    throw e instanceof SemDedupError ? e.within(layout.path) : e;
  }
}

function wrap(layout: EmbeddingsLayout, writable: boolean): Embeddings {
  const addon = loadNative();
  let native: NativeEmbeddings;
  try {
    native = layout.shards
      ? new addon.Embeddings({ shards: layout.shards.filter((s) => s.n > 0).map((s) => ({ path: s.path, offset: s.offset, n: s.n })), d: layout.d, dtype: layout.dtype })
      : new addon.Embeddings({ path: layout.path, offset: layout.offset, n: layout.n, d: layout.d, dtype: layout.dtype, writable });
  } catch (e) {
    throw e instanceof SemDedupError ? e.within(layout.path) : e;
  }
  return {
    ...layout,
    native,
    view: () => native.view(),
    rows: (b, e) => native.rows(b, e),
    close: () => native.close(),
  };
}

/** Opens (maps) embeddings for reading. */
export function openEmbeddings(spec: EmbeddingsSpec): Embeddings {
  return wrap(embeddingsLayout(spec), false);
}

/** Opens (maps) for reading embeddings whose layout was worked out and checked before (a planned run's). */
export function openLayout(layout: EmbeddingsLayout): Embeddings {
  return wrap(layout, false);
}

/**
 * Creates a writable embeddings file of N × D (raw memmap like the original's, or .npy) and
 * maps it read-write: rows written through `view()` land in the file.
 */
export function createEmbeddingsFile(
  path: string,
  n: number,
  d: number,
  opts: { format?: 'memmap' | 'npy'; dtype?: EmbeddingsDtype } = {},
): Embeddings {
  const format = opts.format ?? (path.endsWith('.npy') ? 'npy' : 'memmap');
  const dtype = opts.dtype ?? 'float32';
  const item = dtype === 'float32' ? 4 : 2;
  let offset = 0;
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    throw new OutputError(`${path}: cannot create the embeddings file: ${(e as Error).message}`, { file: path, cause: e });
  }
  try {
    if (format === 'npy') {
      const h = npyHeaderBytes(dtype === 'float32' ? '<f4' : '<f2', [n, d]);
      writeSync(fd, h, 0, h.length, 0);
      offset = h.length;
    }
    ftruncateSync(fd, offset + n * d * item);
  } catch (e) {
    throw new OutputError(`${path}: cannot size the embeddings file: ${(e as Error).message}`, { file: path, cause: e });
  } finally {
    closeSync(fd);
  }
  return wrap({ path, format, dtype, n, d, offset }, true);
}
