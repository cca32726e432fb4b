// Ids ("paths"): one unique string per embedding row.
//
// Formats:
// - memmap: raw fixed-width bytes without header, exactly as
//   np.memmap(path, dtype='S24', mode='r', shape=(N,)) — NUL padded; the file size is N × width.
//   Items are decoded lazily (trailing NULs stripped, as numpy's bytes scalars; UTF-8).
// - npy: a 1-D .npy array of dtype S or U.
// - text: one id per line (\n or \r\n), final newline optional, no empty lines.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError, OutputError } from '../errors.js';
import { atomicWriteFile } from './atomic.js';
import { resolveInputFiles, sourceName } from './inputs.js';
import { fileInputs } from '../manifest.js';
import { NPY_MAGIC, decodeSItem, decodeUItem, dtypeName, readFully, readNpyHeaderFromFile, shapeRepr } from './npy.js';

export type IdsFormat = 'auto' | 'memmap' | 'npy' | 'text' | 'parquet';

export interface Ids {
  readonly length: number;
  /** Where the ids came from: a raw S memmap, a .npy (S or U), a text file, or row numbers. */
  readonly source: 'memmap' | 'npy' | 'text' | 'rows';
  /**
   * 'S' when the ids are bytes (S memmap or S .npy: numpy gives bytes scalars), 'U' when they
   * are str (U .npy, text, row numbers).
   */
  readonly strKind: 'S' | 'U';
  /** Fixed item width for S/U data (bytes for S, characters for U); undefined otherwise. */
  readonly width?: number;
  /** The raw fixed-width item bytes (S: width bytes per id; U: 4 × width bytes per id). */
  readonly raw?: Buffer;
  /** Every id in UTF-8, joined by '\n' (no final one), when the reader has these bytes at hand (a text file without BOM or CR). */
  readonly joined?: Buffer;
  /** The file the ids came from, if any. */
  readonly file?: string;
  /** Every file the ids came from, in order, when they are read from several (one per embeddings shard). */
  readonly files?: readonly string[];
  /** Id of row i (decoded as UTF-8 for bytes ids). */
  get(i: number): string;
  /** UTF-8 bytes of id i (for S data: the raw bytes without trailing NULs). */
  getBytes(i: number): Uint8Array;
  /** All ids as strings. */
  toArray(): string[];
}

export interface ReadIdsOptions {
  format: IdsFormat;
  /** Item dtype of a raw memmap, e.g. 'S24' (or '|S24'); 'U24' for UTF-32 items. */
  dtype?: string;
  /** Expected number of ids (the memmap's N); when given, the file must hold exactly this many. */
  count?: number;
}

function checkIndex(i: number, n: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= n) throw new RangeError(`id index ${i} out of range [0, ${n})`);
}

class FixedWidthIds implements Ids {
  readonly length: number;
  private readonly itemBytes: number;
  constructor(
    readonly source: 'memmap' | 'npy',
    readonly strKind: 'S' | 'U',
    readonly width: number,
    readonly raw: Buffer,
    readonly file: string,
  ) {
    this.itemBytes = strKind === 'S' ? width : width * 4;
    this.length = raw.length / this.itemBytes;
  }
  private item(i: number): Buffer {
    checkIndex(i, this.length);
    return this.raw.subarray(i * this.itemBytes, (i + 1) * this.itemBytes);
  }
  get(i: number): string {
    const it = this.item(i);
    return this.strKind === 'S' ? decodeSItem(it, this.file, i) : decodeUItem(it, this.file, i);
  }
  getBytes(i: number): Uint8Array {
    if (this.strKind === 'U') return Buffer.from(this.get(i), 'utf8');
    const it = this.item(i);
    let end = it.length;
    while (end > 0 && it[end - 1] === 0) end--;
    return it.subarray(0, end);
  }
  toArray(): string[] {
    const out = new Array<string>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.get(i);
    return out;
  }
}

// Ids read from a plain text file whose every line readTextIds has already checked.
const linesChecked = new WeakSet<Ids>();

class ListIds implements Ids {
  readonly strKind = 'U' as const;
  constructor(
    private readonly items: readonly string[],
    readonly source: 'text' | 'rows',
    readonly file?: string,
    readonly joined?: Buffer,
  ) {}
  get length(): number {
    return this.items.length;
  }
  get(i: number): string {
    checkIndex(i, this.items.length);
    return this.items[i] as string;
  }
  getBytes(i: number): Uint8Array {
    return Buffer.from(this.get(i), 'utf8');
  }
  toArray(): string[] {
    return [...this.items];
  }
}

class RowNumberIds implements Ids {
  readonly source = 'rows' as const;
  readonly strKind = 'U' as const;
  constructor(readonly length: number) {}
  get(i: number): string {
    checkIndex(i, this.length);
    return String(i);
  }
  getBytes(i: number): Uint8Array {
    return Buffer.from(this.get(i), 'utf8');
  }
  toArray(): string[] {
    return Array.from({ length: this.length }, (_, i) => String(i));
  }
}

/** Ids that are the row numbers "0", "1", …, for inputs without ids. */
export function rowNumberIds(n: number): Ids {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`invalid id count ${n}`);
  return new RowNumberIds(n);
}

/** Ids from an in-memory list of strings. */
export function idsFromStrings(items: readonly string[]): Ids {
  return new ListIds(items, 'text');
}

function readWhole(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new InputError(`${file}: cannot read ids: ${why}`, { file, cause: e });
  }
}

function parseMemmapDtype(dtype: string, file: string): { kind: 'S' | 'U'; width: number } {
  const m = /^[|<=]?([SU])(\d+)$/.exec(dtype.trim());
  const width = m ? Number(m[2]) : 0;
  if (!m || width <= 0) {
    throw new InputError(`${file}: unsupported ids dtype '${dtype}' (expected a fixed-width bytes dtype such as 'S24')`, {
      file,
      key: 'path_str_dtype',
    });
  }
  return { kind: m[1] as 'S' | 'U', width };
}

function readMemmapIds(file: string, opts: ReadIdsOptions): Ids {
  if (!opts.dtype) {
    throw new InputError(`${file}: a raw ids memmap needs its dtype (e.g. path_str_dtype: S24)`, { file, key: 'path_str_dtype' });
  }
  const { kind, width } = parseMemmapDtype(opts.dtype, file);
  const itemBytes = kind === 'S' ? width : width * 4;
  const size = fs.statSync(file).size;
  const dt = `${kind}${width}`;
  if (opts.count !== undefined) {
    if (size !== opts.count * itemBytes) {
      throw new InputError(
        `${file}: ids memmap of dtype ${dt} and N=${opts.count} must be ${opts.count * itemBytes} bytes, but the file has ${size} bytes` +
          (size % itemBytes === 0 ? ` (${size / itemBytes} ids)` : ''),
        { file },
      );
    }
  } else if (size % itemBytes !== 0) {
    throw new InputError(
      `${file}: ids memmap of dtype ${dt} must be a multiple of ${itemBytes} bytes, but the file has ${size} bytes`,
      { file },
    );
  }
  const raw = readWhole(file);
  if (raw.length !== size) throw new InputError(`${file}: file changed while being read`, { file });
  return new FixedWidthIds('memmap', kind, width, raw, file);
}

function readNpyIds(file: string, opts: ReadIdsOptions): Ids {
  const header = readNpyHeaderFromFile(file);
  const dt = header.dtype;
  if (dt.kind !== 'S' && dt.kind !== 'U') {
    throw new InputError(`${file}: ids .npy must hold strings (dtype S or U), found ${dtypeName(dt)}`, { file });
  }
  if (header.shape.length !== 1) {
    throw new InputError(`${file}: ids .npy must be 1-D, found shape ${shapeRepr(header.shape)}`, { file });
  }
  const n = header.shape[0] as number;
  if (opts.count !== undefined && n !== opts.count) {
    throw new InputError(`${file}: expected ${opts.count} ids, found ${n}`, { file });
  }
  const raw = Buffer.alloc(n * dt.itemsize);
  const fd = fs.openSync(file, 'r');
  try {
    readFully(fd, raw, header.dataOffset, file);
  } finally {
    fs.closeSync(fd);
  }
  const width = dt.kind === 'S' ? dt.itemsize : dt.itemsize / 4;
  return new FixedWidthIds('npy', dt.kind, width, raw, file);
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });

function parseTextIds(buf: Buffer, file: string, count: number | undefined): Ids {
  let text: string;
  try {
    text = utf8Fatal.decode(buf);
  } catch {
    throw new InputError(`${file}: ids text file is not valid UTF-8`, { file });
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] as string;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line === '') throw new InputError(`${file}: line ${i + 1} is empty (ids must not be empty)`, { file });
    if (line.includes('\0')) throw new InputError(`${file}: line ${i + 1} contains a NUL byte`, { file });
    lines[i] = line;
  }
  if (count !== undefined && lines.length !== count) {
    throw new InputError(`${file}: expected ${count} ids, found ${lines.length} lines`, { file });
  }
  // Without a BOM or a CR the file's bytes are the ids joined by '\n' (valid UTF-8 round-trips):
  // extract writes from them without joining and encoding the strings again.
  const plain = !(buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) && !buf.includes(0x0d);
  const joined = plain ? buf.subarray(0, buf.length > 0 && buf[buf.length - 1] === 0x0a ? buf.length - 1 : buf.length) : undefined;
  const ids = new ListIds(lines, 'text', file, joined);
  // A file without BOM or CR whose lines were all decoded as strict UTF-8, split on '\n' and
  // checked above (none empty, no NUL) holds every id checkIdStrings would refuse: none.
  if (plain) linesChecked.add(ids);
  return ids;
}

function looksLikeText(buf: Buffer): boolean {
  if (buf.includes(0)) return false;
  if (!buf.includes(0x0a)) return false;
  try {
    utf8Fatal.decode(buf);
    return true;
  } catch {
    return false;
  }
}

/** Read ids in any of the supported formats. */
export function readIds(file: string, opts: ReadIdsOptions): Ids {
  if (opts.count !== undefined && (!Number.isSafeInteger(opts.count) || opts.count < 0)) {
    throw new InputError(`${file}: invalid id count ${opts.count}`, { file });
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new InputError(`${file}: cannot read ids: no such file`, { file, cause: e });
  }
  if (st.isDirectory()) throw new InputError(`${file}: cannot read ids: is a directory`, { file });
  switch (opts.format) {
    case 'memmap':
      return readMemmapIds(file, opts);
    case 'npy':
      return readNpyIds(file, opts);
    case 'text':
      return parseTextIds(readWhole(file), file, opts.count);
    case 'parquet':
      throw new InputError(`${file}: Parquet ids are converted once into the output folder before they are read: run the command with a config, or prepareInputs() first`, { file, key: 'ids' });
    case 'auto':
      break;
    default:
      throw new InputError(`${file}: unknown ids format '${String(opts.format)}'`, { file });
  }
  const head = Buffer.alloc(Math.min(st.size, 6));
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (head.length === 6 && head.equals(NPY_MAGIC)) return readNpyIds(file, opts);
  if (head.subarray(0, 4).toString('latin1') === 'PAR1') return readIds(file, { ...opts, format: 'parquet' });
  const ext = path.extname(file).toLowerCase();
  if (ext === '.txt' || ext === '.tsv' || ext === '.csv') return parseTextIds(readWhole(file), file, opts.count);
  const buf = readWhole(file);
  if (looksLikeText(buf)) return parseTextIds(buf, file, opts.count);
  if (!opts.dtype) {
    throw new InputError(
      `${file}: cannot tell the ids format (not .npy, not a UTF-8 text file with one id per line); for a raw memmap give its dtype (path_str_dtype, e.g. S24)`,
      { file, key: 'path_str_dtype' },
    );
  }
  return readMemmapIds(file, opts);
}

function quoteId(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
}

/**
 * Throw InputError for an id that cannot be written as one line of the kept list: empty, or
 * holding a line break (\n, \r), a NUL, or bytes that are not UTF-8. Names the row.
 */
export function checkIdStrings(ids: Ids, file: string): void {
  if (linesChecked.has(ids)) return;
  const text = ids.source === 'text';
  for (let i = 0; i < ids.length; i++) {
    const where = text ? `line ${i + 1}` : `row ${i}`;
    let s: string;
    try {
      s = ids.get(i); // S items: decoded as strict UTF-8; U items: valid code points
    } catch (e) {
      throw new InputError(`${file}: the id at ${where} is not valid UTF-8 text (${(e as Error).message.replace(/^.*?: /, '')})`, { file, cause: e });
    }
    if (s.length === 0) throw new InputError(`${file}: the id at ${where} is empty`, { file });
    const bad = /[\n\r\0]/.exec(s);
    if (bad) {
      const what = bad[0] === '\n' ? 'a newline' : bad[0] === '\r' ? 'a carriage return' : 'a NUL byte';
      throw new InputError(`${file}: the id at ${where} (${quoteId(s)}) holds ${what}; ids are written one per line`, { file });
    }
  }
}

/**
 * Throw InputError if an id appears twice, naming the first duplicate and both rows, or if an
 * id cannot be written as one line (checkIdStrings).
 */
export function checkUniqueIds(ids: Ids, file: string): void {
  checkIdStrings(ids, file);
  const dup = firstRepeat(ids);
  if (dup) {
    const [prev, i] = dup;
    const where = ids.source === 'text' ? `lines ${prev + 1} and ${i + 1}` : `rows ${prev} and ${i}`;
    throw new InputError(`${file}: ids must be unique, but ${quoteId(ids.get(i))} appears at ${where}`, { file });
  }
}

/**
 * The first id (in order) equal to an earlier one, as [the earlier's first row, its row]. Where the
 * ids' bytes are at hand (a plain text file's bytes, a fixed-width memmap or .npy: equal bytes
 * exactly when equal ids), a hash table over those bytes; otherwise a Map of the strings.
 */
function firstRepeat(ids: Ids): [number, number] | undefined {
  const n = ids.length;
  if (ids.joined) {
    // one pass over the bytes: each line's start and hash
    const data = ids.joined;
    const starts = new Float64Array(n + 1);
    const hash = new Int32Array(n);
    let i = 0, h = 0x811c9dc5 | 0;
    for (let j = 0; j < data.length; j++) {
      const b = data[j]!;
      if (b === 0x0a) {
        hash[i++] = h;
        starts[i] = j + 1;
        h = 0x811c9dc5 | 0;
      } else {
        h = Math.imul(h ^ b, 0x01000193);
      }
    }
    if (i < n) hash[i] = h;
    starts[n] = data.length + 1;
    return firstRepeatOfBytes(data, n, hash, (k) => starts[k]!, (k) => starts[k + 1]! - 1);
  }
  if (ids.raw && ids.width) {
    const item = ids.strKind === 'S' ? ids.width : ids.width * 4;
    const data = ids.raw;
    const hash = new Int32Array(n);
    for (let k = 0, j = 0; k < n; k++) {
      let h = 0x811c9dc5 | 0;
      for (const e = j + item; j < e; j++) h = Math.imul(h ^ data[j]!, 0x01000193);
      hash[k] = h;
    }
    return firstRepeatOfBytes(data, n, hash, (k) => k * item, (k) => (k + 1) * item);
  }
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const key = ids.strKind === 'S' ? Buffer.from(ids.getBytes(i)).toString('latin1') : ids.get(i);
    const prev = seen.get(key);
    if (prev !== undefined) return [prev, i];
    seen.set(key, i);
  }
  return undefined;
}

/** firstRepeat over items that are the byte ranges [start(i), end(i)) of data, whose FNV-1a hashes are hash[i]. */
function firstRepeatOfBytes(data: Uint8Array, n: number, hash: Int32Array, start: (i: number) => number, end: (i: number) => number): [number, number] | undefined {
  let size = 1;
  while (size < 2 * n) size *= 2;
  const table = new Int32Array(size).fill(-1);
  for (let i = 0; i < n; i++) {
    const h = hash[i]!;
    for (let slot = (h ^ (h >>> 15)) & (size - 1); ; slot = (slot + 1) & (size - 1)) {
      const k = table[slot]!;
      if (k < 0) {
        table[slot] = i;
        break;
      }
      if (hash[k] === h) {
        const ks = start(k), ke = end(k), s = start(i), e = end(i);
        if (ke - ks === e - s && Buffer.compare(data.subarray(ks, ke), data.subarray(s, e)) === 0) return [k, i];
      }
    }
  }
  return undefined;
}

/**
 * Write ids as a raw fixed-width bytes memmap (np.memmap dtype S{width}): UTF-8, NUL padded,
 * no header. Atomic. Throws OutputError if an id is longer than `width` bytes.
 */
export function writeIdsMemmap(file: string, ids: readonly string[], width: number): void {
  if (!Number.isInteger(width) || width <= 0) throw new OutputError(`${file}: invalid ids width ${width}`, { file });
  const out = Buffer.alloc(ids.length * width);
  for (let i = 0; i < ids.length; i++) {
    const b = Buffer.from(ids[i] as string, 'utf8');
    if (b.length > width) {
      throw new OutputError(`${file}: id ${quoteId(ids[i] as string)} (row ${i}) is ${b.length} bytes in UTF-8, longer than S${width}`, {
        file,
      });
    }
    b.copy(out, i * width);
  }
  atomicWriteFile(file, out);
}

/** Ids of several files read as one list in order (shards); `counts`: the rows each must hold. */
class ConcatIds implements Ids {
  readonly length: number;
  readonly source: Ids['source'];
  readonly strKind: 'S' | 'U';
  readonly width?: number;
  readonly raw?: Buffer;
  readonly file?: string;
  readonly files?: readonly string[];
  private readonly starts: number[] = [];
  constructor(private readonly parts: readonly Ids[]) {
    let n = 0;
    for (const p of parts) {
      this.starts.push(n);
      n += p.length;
    }
    this.length = n;
    const p0 = parts[0]!;
    this.strKind = parts.every((p) => p.strKind === p0.strKind) ? p0.strKind : 'U';
    this.source = parts.every((p) => p.source === p0.source) ? p0.source : 'text';
    this.file = p0.file;
    this.files = parts.flatMap((p) => p.files ?? (p.file ? [p.file] : []));
    // One fixed width and kind: the raw items concatenated (what the native extract reads).
    if (p0.raw && p0.width !== undefined && parts.every((p) => p.raw && p.width === p0.width && p.strKind === p0.strKind)) {
      this.width = p0.width;
      this.raw = Buffer.concat(parts.map((p) => p.raw!));
    }
  }
  private at(i: number): [Ids, number] {
    checkIndex(i, this.length);
    let lo = 0;
    let hi = this.parts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= i) lo = mid;
      else hi = mid - 1;
    }
    while (this.parts[lo]!.length === 0) lo++;
    return [this.parts[lo]!, i - this.starts[lo]!];
  }
  get(i: number): string {
    const [p, j] = this.at(i);
    return p.get(j);
  }
  getBytes(i: number): Uint8Array {
    const [p, j] = this.at(i);
    return this.strKind === 'S' ? p.getBytes(j) : Buffer.from(p.get(j), 'utf8');
  }
  toArray(): string[] {
    return this.parts.flatMap((p) => p.toArray());
  }
}

/**
 * Ids from one file, or from shards (a list, a glob or a folder, in order; one ids file per
 * embeddings shard, each in any supported format). `shardCounts`: the rows of each embeddings
 * shard, which the ids file beside it must hold; `count`: all ids together.
 */
export function readIdsFrom(source: string | readonly string[], opts: ReadIdsOptions & { shardCounts?: readonly number[] }): Ids {
  const files = resolveInputFiles(source, 'ids', 'ids');
  if (files.length === 1 && typeof source === 'string' && files[0] === source) return readIds(files[0], opts);
  const { count, shardCounts, ...each } = opts;
  if (shardCounts && shardCounts.length !== files.length)
    throw new InputError(`${sourceName(source)}: ${files.length} ids files for ${shardCounts.length} embeddings shards; give one ids file per shard, in the same order`, { file: files[0], key: 'ids' });
  const parts = files.map((f, i) => readIds(f, { ...each, ...(shardCounts ? { count: shardCounts[i]! } : {}) }));
  const ids = new ConcatIds(parts);
  if (count !== undefined && ids.length !== count)
    throw new InputError(`${sourceName(source)}: the ${files.length} ids files hold ${ids.length} ids, the embeddings have ${count} rows`, { file: files[0], key: 'ids' });
  return ids;
}

/** The ids as inputs of a step in the manifest: none for row numbers; `ids`, or `ids.0`, `ids.1`, … for ids read from several files. */
export function idsInputs(ids: Ids | undefined): Record<string, string> {
  if (!ids || ids.source === 'rows') return {};
  if (ids.files) return fileInputs('ids', ids.files, true);
  return ids.file ? { ids: ids.file } : {};
}
