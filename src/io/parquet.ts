// Parquet inputs (NeMo Curator's layout: an `embedding` list column, an `id` column, metadata
// columns such as a quality score), read through DuckDB (@duckdb/node-api), never decoded by hand.
//
// The engine maps its inputs zero-copy and reads them many times (the check, the k-means sample,
// the assignment, the gathers of every cluster), so a Parquet dataset is converted once, in one
// streaming pass of bounded memory, into a .npy of the same float type, a text file of the ids and
// a float64 .npy per metadata column (`importParquet`); every later read is a mapping. Every file is
// checked in that pass (not Parquet, missing column, wrong type, ragged lists, nulls, NaN), and an
// error names the file, the row group and the column.
import { DuckDBInstance, type DuckDBConnection, type DuckDBDataChunk } from '@duckdb/node-api';
import { writeSync } from 'node:fs';
import { InputError, OutputError } from '../errors.js';
import { toFloat16 } from './half.js';
import { npyHeaderBytes } from './npy.js';
import { openAtomicWriter, type AtomicWriter } from './atomic.js';

import { isParquetFile } from './inputs.js';

export { isParquetFile };

/** A string as an SQL literal (a quote inside doubled: nothing in it is read as SQL). */
export function sqlString(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
/** A name as an SQL identifier (a double quote inside doubled). */
export function sqlIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** One DuckDB connection (in memory) for a read. */
export async function openParquetReader(threads = 0): Promise<{ con: DuckDBConnection; close(): void }> {
  // Each file is read once: DuckDB's cache of file blocks would only grow the resident set. The
  // allocator's background thread returns the pages of each decoded Parquet page as they are freed;
  // without it freed pages linger and the peak RSS varies with how the row groups overlap
  // (bench/PARQUET.md: 600-620 MiB at 250k, 1M and 2M rows with it, 630-1050 MiB without).
  const inst = await DuckDBInstance.create(':memory:', {
    enable_external_file_cache: 'false',
    allocator_background_threads: 'true',
    ...(threads > 0 ? { threads: String(threads) } : {}),
  });
  const con = await inst.connect();
  return {
    con,
    close: () => {
      con.closeSync();
      inst.closeSync();
    },
  };
}

export interface ParquetFileInfo {
  file: string;
  rows: number;
  /** Rows of each row group, in order. */
  rowGroups: number[];
  /** Column name → DuckDB type (`FLOAT[]`, `FLOAT[256]`, `VARCHAR`, `DOUBLE`, …). */
  columns: Map<string, string>;
  /** Columns whose Parquet leaf is a half float (FLOAT16). */
  half: Set<string>;
  /** List columns whose values (the leaf) may be null. */
  nullableLeaf: Set<string>;
}

/** The schema and row groups of a Parquet file (its footer only). */
export async function describeParquet(con: DuckDBConnection, file: string): Promise<ParquetFileInfo> {
  if (!isParquetFile(file)) throw new InputError(`${file}: not a Parquet file (it does not start and end with the magic bytes PAR1)`, { file });
  try {
    const d = await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(file)})`);
    const columns = new Map<string, string>();
    for (const r of d.getRowObjects()) columns.set(String(r.column_name), String(r.column_type));
    const g = await con.runAndReadAll(
      `SELECT row_group_id, max(row_group_num_rows) AS n FROM parquet_metadata(${sqlString(file)}) GROUP BY row_group_id ORDER BY row_group_id`,
    );
    const rowGroups = g.getRowObjects().map((r) => Number(r.n));
    const s = await con.runAndReadAll(`SELECT name, type, logical_type, repetition_type FROM parquet_schema(${sqlString(file)})`);
    const half = new Set<string>();
    const nullableLeaf = new Set<string>();
    let last = '';
    for (const r of s.getRowObjects()) {
      // The leaf of a list column is named `element` (or `item`); it follows its column's group.
      if (columns.has(String(r.name))) last = String(r.name);
      if (String(r.logical_type ?? '').toLowerCase().includes('float16')) half.add(last);
      if (r.type !== null && r.repetition_type === 'OPTIONAL' && !columns.has(String(r.name))) nullableLeaf.add(last);
    }
    return { file, rows: rowGroups.reduce((a, b) => a + b, 0), rowGroups, columns, half, nullableLeaf };
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${file}: cannot read the Parquet file: ${(e as Error).message}`, { file, cause: e });
  }
}

/** The row group holding file row `row`. */
function rowGroupOf(info: ParquetFileInfo, row: number): number {
  let at = 0;
  for (let g = 0; g < info.rowGroups.length; g++) {
    at += info.rowGroups[g]!;
    if (row < at) return g;
  }
  return info.rowGroups.length - 1;
}

function where(info: ParquetFileInfo, column: string, row: number): string {
  return `${info.file}: row group ${rowGroupOf(info, row)}, column '${column}', row ${row}`;
}

function needColumn(info: ParquetFileInfo, column: string, key: string): string {
  const t = info.columns.get(column);
  if (t === undefined)
    throw new InputError(`${info.file}: no column '${column}' (the file has ${[...info.columns.keys()].map((c) => `'${c}'`).join(', ')}); set \`${key}\``, { file: info.file, key });
  return t;
}

const LIST_TYPE = /^(FLOAT|DOUBLE)\[(\d*)\]$/;
const ID_TYPES = /^(VARCHAR|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT)$/;
const NUMERIC_TYPES = /^(FLOAT|DOUBLE|TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|DECIMAL.*)$/;

export interface ParquetImportOptions {
  /** Embeddings: Parquet files in order, their list column, and the .npy to write. */
  embeddings?: { files: readonly string[]; column: string; out: string };
  /** Ids: Parquet files in order (the embeddings' files, or one per embeddings shard, or any split), their column, and the text file to write. */
  ids?: { files: readonly string[]; column: string; out: string };
  /** Numeric metadata columns (e.g. a quality score): Parquet files in order, each column and the float64 .npy to write. */
  columns?: { files: readonly string[]; columns: { column: string; out: string }[] };
  /** Rows of each embeddings shard, when the ids or columns come from one Parquet file per shard. */
  shardRows?: readonly number[];
  /** Total rows the ids and columns must have (the embeddings' N), when the embeddings are not Parquet. */
  rows?: number;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface ParquetImportResult {
  n: number;
  d?: number;
  dtype?: 'float32' | 'float16';
  /** Seconds of the embeddings pass, and its float payload in bytes (4 per value as float32, 2 as float16). */
  embeddingsSeconds?: number;
  payloadBytes?: number;
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw Object.assign(new Error('cancelled'), { code: 'ERR_CANCELLED' });
}

/** What the conversion reads of DuckDB's list vector (@duckdb/node-api's DuckDBListVector). */
interface ListVector {
  /** The rows' validity bits, 64 rows a word (null: every row valid). */
  validity: { itemValid(i: number): boolean; data?: BigUint64Array | null };
  /** (offset, length) of each row into the child vector. */
  entryData?: BigUint64Array;
  getEntryOffset(i: number): number;
  getEntryLength(i: number): number;
  childVector: { items: Float32Array };
}

/** The `file_row_number` column (@duckdb/node-api's DuckDBBigIntVector). */
interface RowNumberVector {
  items?: BigInt64Array;
  getItem(i: number): bigint | null;
}

/**
 * Checks a chunk of `m` rows of the embeddings at once: every row valid, a list of `d` values,
 * numbered `r0 + i` in the file (below `rows`, not seen before). Returns -1 when the rows are
 * also laid out one after another in the child vector, -2 when they are valid but not, or the
 * index of the first row that fails a check.
 */
function firstBadRow(ev: ListVector, rv: RowNumberVector, m: number, d: number, r0: number, rows: number, seen: Uint8Array): number {
  const ent = ev.entryData;
  const nums = rv.items;
  if (!(ent instanceof BigUint64Array) || ent.length < 2 * m || !(nums instanceof BigInt64Array) || nums.length < m) {
    // Another layout of the vectors than this version of @duckdb/node-api's: the row accessors.
    let contiguous = true;
    const off = ev.validity.itemValid(0) ? ev.getEntryOffset(0) : 0;
    for (let i = 0; i < m; i++) {
      const row = Number(rv.getItem(i));
      if (row !== r0 + i || row >= rows || seen[row] || !ev.validity.itemValid(i) || ev.getEntryLength(i) !== d) return i;
      if (ev.getEntryOffset(i) !== off + i * d) contiguous = false;
    }
    return contiguous ? -1 : -2;
  }
  // Validity: every bit of the first m set.
  const valid = ev.validity.data;
  if (valid) {
    const w = new Uint32Array(valid.buffer, valid.byteOffset, Math.ceil(m / 32));
    for (let k = 0; k < w.length; k++) {
      const bits = k === w.length - 1 && m % 32 ? (2 ** (m % 32) - 1) >>> 0 : 0xffffffff;
      if (((w[k]! & bits) >>> 0) !== bits) for (let i = 32 * k; i < Math.min(m, 32 * k + 32); i++) if (!ev.validity.itemValid(i)) return i;
    }
  }
  if (r0 < 0 || r0 + m > rows) return r0 < 0 ? 0 : Math.max(0, rows - r0);
  for (let i = 0; i < m; i++) if (seen[r0 + i]) return i;
  // Entries and row numbers as 32-bit words (little-endian: low word first), all below 2^32.
  const e = new Uint32Array(ent.buffer, ent.byteOffset, 4 * m);
  const r = new Uint32Array(nums.buffer, nums.byteOffset, 2 * m);
  const off = e[0]!;
  let contiguous = e[1] === 0;
  for (let i = 0; i < m; i++) {
    if (r[2 * i] !== r0 + i || r[2 * i + 1] !== 0 || e[4 * i + 2] !== d || e[4 * i + 3] !== 0) return i;
    if (e[4 * i] !== off + i * d || e[4 * i + 1] !== 0) contiguous = false;
  }
  return contiguous ? -1 : -2;
}

/** Writes all of `bytes` at `position` of the writer's temporary file. */
function writeAt(w: AtomicWriter, bytes: Uint8Array, position: number): void {
  let off = 0;
  try {
    while (off < bytes.length) off += writeSync(w.fd, bytes, off, bytes.length - off, position + off);
  } catch (e) {
    throw new OutputError(`${w.target}: cannot write: ${(e as Error).message}`, { file: w.target, cause: e });
  }
}


/**
 * Converts Parquet columns, streaming in chunks of DuckDB's vector size (bounded memory): the
 * embeddings into a .npy (float32, or float16 when the Parquet leaf is FLOAT16), the ids into a
 * text file (one per line), metadata columns into float64 .npy files. Every output is written
 * to a temporary file and renamed when complete. Checks every file and row first-to-last and
 * refuses a bad one naming the file, the row group and the column.
 */
export async function importParquet(o: ParquetImportOptions): Promise<ParquetImportResult> {
  const reader = await openParquetReader(o.threads ?? 0);
  const writers: AtomicWriter[] = [];
  try {
    const { con } = reader;
    // Footers first: every file and column is checked before any row is converted.
    const embInfo = o.embeddings ? await Promise.all(o.embeddings.files.map((f) => describeParquet(con, f))) : [];
    const idsInfo = o.ids ? await Promise.all(o.ids.files.map((f) => describeParquet(con, f))) : [];
    const colInfo = o.columns ? await Promise.all(o.columns.files.map((f) => describeParquet(con, f))) : [];
    let d: number | undefined;
    let half = false;
    for (const info of embInfo) {
      const col = o.embeddings!.column;
      const t = needColumn(info, col, 'embeddings_column');
      const m = LIST_TYPE.exec(t);
      if (!m || m[1] !== 'FLOAT')
        throw new InputError(`${info.file}: column '${col}' is ${t}; embeddings must be a list or fixed-size list of float or half-float values`, { file: info.file, key: 'embeddings_column' });
      const h = info.half.has(col);
      if (info !== embInfo[0] && h !== half)
        throw new InputError(`${info.file}: column '${col}' holds ${h ? 'half floats' : 'floats'}, but ${embInfo[0]!.file} holds ${half ? 'half floats' : 'floats'}; all files must have one type`, { file: info.file });
      half = h;
      if (m[2]) {
        const size = Number(m[2]);
        if (d !== undefined && size !== d)
          throw new InputError(`${info.file}: column '${col}' holds lists of ${size} values, but ${embInfo[0]!.file} has ${d}`, { file: info.file, key: 'embeddings_column' });
        d = size;
      }
    }
    for (const info of idsInfo) {
      const t = needColumn(info, o.ids!.column, 'ids_column');
      if (!ID_TYPES.test(t)) throw new InputError(`${info.file}: column '${o.ids!.column}' is ${t}; ids must be strings or integers`, { file: info.file, key: 'ids_column' });
    }
    for (const info of colInfo)
      for (const c of o.columns!.columns) {
        const t = needColumn(info, c.column, 'rank_by');
        if (!NUMERIC_TYPES.test(t)) throw new InputError(`${info.file}: column '${c.column}' is ${t}; a ranking column must be numeric`, { file: info.file, key: 'rank_by' });
      }
    const n = embInfo.length ? embInfo.reduce((a, i) => a + i.rows, 0) : (o.rows ?? idsInfo.concat(colInfo).reduce((a, i) => a + i.rows, 0));
    const per = embInfo.length ? embInfo.map((i) => i.rows) : o.shardRows;
    const checkSplit = (infos: ParquetFileInfo[], what: string) => {
      const total = infos.reduce((a, i) => a + i.rows, 0);
      if (total !== n) throw new InputError(`${infos[0]!.file}: the ${what} files hold ${total} rows, the embeddings ${n}`, { file: infos[0]!.file, key: what });
      if (per && infos.length === per.length)
        infos.forEach((info, i) => {
          if (info.rows !== per[i]) throw new InputError(`${info.file}: ${info.rows} rows, but embeddings shard ${i + 1} has ${per[i]}`, { file: info.file, key: what });
        });
    };
    if (idsInfo.length) checkSplit(idsInfo, 'ids');
    if (colInfo.length) checkSplit(colInfo, 'rank_by');

    const total = (embInfo.length ? n : 0) + (idsInfo.length ? n : 0) + (colInfo.length ? n : 0);
    let done = 0;
    const progress = (m: number) => {
      done += m;
      o.onProgress?.(done, total);
    };
    const result: ParquetImportResult = { n };

    if (o.embeddings) {
      const t0 = performance.now();
      const col = sqlIdent(o.embeddings.column);
      if (d === undefined) {
        // A variable-length list: D is the first row's length (every other row is checked against it).
        const info = embInfo.find((i) => i.rows > 0);
        if (!info) throw new InputError(`${embInfo[0]!.file}: the embeddings hold no rows`, { file: embInfo[0]!.file });
        // (By its row number: DuckDB then decodes row group 0 alone, where LIMIT 1 starts a row group per thread.)
        const r = await con.runAndReadAll(`SELECT len(${col}) AS d FROM read_parquet(${sqlString(info.file)}, file_row_number = true) WHERE file_row_number = 0`);
        d = Number(r.getRowObjects()[0]!.d ?? 0);
        if (!(d > 0)) throw new InputError(`${info.file}: row group 0, column '${o.embeddings.column}', row 0: an empty or null list`, { file: info.file });
      }
      const D = d;
      const w = openAtomicWriter(o.embeddings.out);
      writers.push(w);
      const header = npyHeaderBytes(half ? '<f2' : '<f4', [n, D]);
      w.write(header);
      const rowBytes = D * (half ? 2 : 4);
      // DuckDB decodes row groups in parallel and hands over chunks as they come (no ordering
      // buffer: faster, and memory bounded by the row groups in flight); each chunk is written at
      // its rows' place, and every row is seen exactly once.
      await con.run('SET preserve_insertion_order = false');
      let base = 0;
      for (const info of embInfo) {
        if (info.rows === 0) continue;
        const seen = new Uint8Array(info.rows);
        let count = 0;
        // Null values inside the lists are counted only when the schema allows them.
        const nullable = info.nullableLeaf.has(o.embeddings.column);
        const res = await con.stream(
          `SELECT ${col} AS e, file_row_number AS r${nullable ? `, list_count(${col}) AS c` : ''} FROM read_parquet(${sqlString(info.file)}, file_row_number = true)`,
        );
        // The next chunk is fetched (decoded on DuckDB's side) while this one is checked and written.
        let next: Promise<DuckDBDataChunk | null> | undefined = res.fetchChunk();
        try {
          for (;;) {
            checkAbort(o.signal);
            const chunk = await next;
            next = undefined;
            if (!chunk || chunk.rowCount === 0) break;
            next = res.fetchChunk();
            const m = chunk.rowCount;
            // The list vector: its rows' validity, (offset, length) entries into one flat float child,
            // and the file's row numbers, all checked a chunk at a time over 32-bit views of their
            // buffers (no per-row accessor calls); a failed check finds its row by the row accessors.
            const ev = chunk.getColumnVector(0) as unknown as ListVector;
            const rv = chunk.getColumnVector(1) as unknown as RowNumberVector;
            const cv = nullable ? chunk.getColumnVector(2) : undefined;
            const r0 = Number(rv.getItem(0));
            const bad = firstBadRow(ev, rv, m, D, r0, info.rows, seen);
            if (bad >= 0) {
              const row = Number(rv.getItem(bad));
              if (row !== r0 + bad || row >= info.rows || seen[row]) throw new InputError(`${info.file}: row ${row} read out of place`, { file: info.file });
              if (!ev.validity.itemValid(bad)) throw new InputError(`${where(info, o.embeddings.column, row)}: the embedding is null`, { file: info.file, key: 'embeddings_column' });
              const len = ev.getEntryLength(bad);
              if (len !== D)
                throw new InputError(`${where(info, o.embeddings.column, row)}: a list of ${len} values, expected ${D} (ragged lists)`, { file: info.file, key: 'embeddings_column' });
              throw new InputError(`${where(info, o.embeddings.column, row)}: the list's entry is out of place`, { file: info.file, key: 'embeddings_column' });
            }
            seen.fill(1, r0, r0 + m);
            if (cv) {
              const counts = (cv as unknown as RowNumberVector).items;
              const c32 = counts instanceof BigInt64Array && counts.length >= m ? new Uint32Array(counts.buffer, counts.byteOffset, 2 * m) : undefined;
              for (let i = 0; i < m; i++)
                if (c32 ? c32[2 * i] !== D || c32[2 * i + 1] !== 0 : Number(cv.getItem(i) as bigint) !== D)
                  throw new InputError(`${where(info, o.embeddings.column, r0 + i)}: the list holds null values`, { file: info.file, key: 'embeddings_column' });
            }
            const items = ev.childVector.items;
            const off = ev.getEntryOffset(0);
            let vals = items.subarray(off, off + m * D);
            if (bad === -2) {
              // Valid rows of D values, but not one after another in the child vector.
              vals = new Float32Array(m * D);
              for (let i = 0; i < m; i++) vals.set(items.subarray(ev.getEntryOffset(i), ev.getEntryOffset(i) + D), i * D);
            }
            for (let j = 0; j < vals.length; j++)
              if (vals[j] !== vals[j]) {
                const row = r0 + Math.floor(j / D);
                throw new InputError(`${where(info, o.embeddings.column, row)}: value ${j % D} is NaN`, { file: info.file, key: 'embeddings_column' });
              }
            let bytes: Uint8Array;
            if (half) {
              const h = toFloat16(vals instanceof Float32Array ? vals : Float32Array.from(vals));
              bytes = new Uint8Array(h.buffer);
            } else {
              bytes = new Uint8Array(vals.buffer, vals.byteOffset, vals.byteLength);
            }
            writeAt(w, bytes, header.length + (base + r0) * rowBytes);
            count += m;
            progress(m);
          }
        } finally {
          // A fetch still in flight (after an error) ends before the connection closes.
          if (next) await next.catch(() => null);
        }
        if (count !== info.rows) throw new InputError(`${info.file}: read ${count} rows, the footer says ${info.rows}`, { file: info.file });
        base += info.rows;
      }
      await con.run('SET preserve_insertion_order = true');
      result.d = D;
      result.dtype = half ? 'float16' : 'float32';
      result.embeddingsSeconds = (performance.now() - t0) / 1000;
      result.payloadBytes = n * D * (half ? 2 : 4);
    }

    if (o.ids) {
      const w = openAtomicWriter(o.ids.out);
      writers.push(w);
      const col = sqlIdent(o.ids.column);
      let first = true;
      for (const info of idsInfo) {
        if (info.rows === 0) continue;
        const res = await con.stream(`SELECT CAST(${col} AS VARCHAR) AS i, file_row_number AS r FROM read_parquet(${sqlString(info.file)}, file_row_number = true)`);
        for (;;) {
          checkAbort(o.signal);
          const chunk = await res.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          const iv = chunk.getColumnVector(0);
          const rv = chunk.getColumnVector(1);
          const lines: string[] = [];
          for (let i = 0; i < chunk.rowCount; i++) {
            const v = iv.getItem(i) as string | null;
            const row = Number(rv.getItem(i) as bigint);
            if (v === null) throw new InputError(`${where(info, o.ids.column, row)}: the id is null`, { file: info.file, key: 'ids_column' });
            if (v === '' || /[\n\r\0]/.test(v))
              throw new InputError(`${where(info, o.ids.column, row)}: the id is ${v === '' ? 'empty' : 'holding a line break or NUL'} (ids are written one per line)`, { file: info.file, key: 'ids_column' });
            lines.push(v);
          }
          w.write((first ? '' : '\n') + lines.join('\n'));
          first = false;
          progress(chunk.rowCount);
        }
      }
    }

    if (o.columns && o.columns.columns.length) {
      const cols = o.columns.columns;
      const ws = cols.map((c) => {
        const w = openAtomicWriter(c.out);
        writers.push(w);
        w.write(npyHeaderBytes('<f8', [n]));
        return w;
      });
      for (const info of colInfo) {
        if (info.rows === 0) continue;
        const res = await con.stream(
          `SELECT ${cols.map((c, i) => `CAST(${sqlIdent(c.column)} AS DOUBLE) AS c${i}`).join(', ')}, file_row_number AS r FROM read_parquet(${sqlString(info.file)}, file_row_number = true)`,
        );
        for (;;) {
          checkAbort(o.signal);
          const chunk = await res.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          const rv = chunk.getColumnVector(cols.length);
          cols.forEach((c, k) => {
            const v = chunk.getColumnVector(k);
            const out = new Float64Array(chunk.rowCount);
            for (let i = 0; i < chunk.rowCount; i++) {
              const x = v.getItem(i) as number | null;
              if (x === null || Number.isNaN(x))
                throw new InputError(`${where(info, c.column, Number(rv.getItem(i) as bigint))}: the value is ${x === null ? 'null' : 'NaN'}`, { file: info.file, key: 'rank_by' });
              out[i] = x;
            }
            ws[k]!.write(new Uint8Array(out.buffer));
          });
          progress(chunk.rowCount);
        }
      }
    }
    for (const w of writers) w.commit();
    writers.length = 0;
    return result;
  } finally {
    for (const w of writers) w.abort();
    reader.close();
  }
}

export interface TableColumn {
  name: string;
  type: 'VARCHAR' | 'BIGINT' | 'INTEGER' | 'DOUBLE' | 'BOOLEAN';
  /** The value of row i (null: a null cell). */
  get(i: number): string | bigint | number | boolean | null;
}

/**
 * Writes a table of `rows` rows as one Parquet file (zstd), through DuckDB: into a temporary file
 * beside `target`, renamed when complete.
 */
export async function writeParquetTable(target: string, rows: number, columns: readonly TableColumn[], threads = 0): Promise<void> {
  const { mkdtempSync, readFileSync, renameSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { tempPathFor, outputTarget, writeOutputFile } = await import('./atomic.js');
  // A user-named output: the standard output, a FIFO or a device gets the finished file's bytes
  // written through (made in a private temporary folder); a link is refused.
  const through = outputTarget(target) !== 'file';
  const reader = await openParquetReader(threads);
  const privateDir = through ? mkdtempSync(join(tmpdir(), 'semdedup-')) : undefined;
  const tmp = privateDir ? join(privateDir, 'table.parquet') : tempPathFor(target);
  try {
    const { con } = reader;
    await con.run(`CREATE TABLE t (${columns.map((c) => `${sqlIdent(c.name)} ${c.type}`).join(', ')})`);
    const app = await con.createAppender('t');
    for (let i = 0; i < rows; i++) {
      for (const c of columns) {
        const v = c.get(i);
        if (v === null) app.appendNull();
        else if (c.type === 'VARCHAR') app.appendVarchar(v as string);
        else if (c.type === 'BIGINT') app.appendBigInt(v as bigint);
        else if (c.type === 'INTEGER') app.appendInteger(v as number);
        else if (c.type === 'DOUBLE') app.appendDouble(v as number);
        else app.appendBoolean(v as boolean);
      }
      app.endRow();
    }
    app.closeSync();
    await con.run(`COPY t TO ${sqlString(tmp)} (FORMAT parquet, COMPRESSION zstd)`);
    if (through) writeOutputFile(target, readFileSync(tmp));
    else renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    reader.close();
    if (privateDir) rmSync(privateDir, { recursive: true, force: true });
  }
}
