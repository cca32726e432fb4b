// The texts to embed, streamed from a file (bounded memory whatever its size): JSON Lines (one
// object per line, the text and id in named fields), plain text (one text per line, the id is
// the row number) or Parquet (a text column and an id column, through DuckDB). Every bad record is
// an error naming the file, the line (or row) and the field.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { extname } from 'node:path';
import { InputError } from '../errors.js';
import { isParquetFile } from '../io/inputs.js';

export type TextFormat = 'auto' | 'jsonl' | 'text' | 'parquet';

export interface TextSource {
  /** The file. */
  path: string;
  /** 'auto' (default): parquet by its magic bytes, jsonl for .jsonl / .ndjson / .json, else text. */
  format?: TextFormat;
  /** JSON Lines and Parquet: the field of the text (default `text`). */
  textField?: string;
  /** JSON Lines and Parquet: the field of the id (string or integer); none: the row number. */
  idField?: string;
}

export interface TextRecord {
  text: string;
  id: string;
}

/** The format of a source ('auto' resolved), after checking that the file is there. */
export function textFormat(src: TextSource): Exclude<TextFormat, 'auto'> {
  if (!existsSync(src.path)) throw new InputError(`${src.path}: input file not found`, { file: src.path, key: 'input' });
  if (!statSync(src.path).isFile()) throw new InputError(`${src.path}: the input must be a file`, { file: src.path, key: 'input' });
  const f = src.format ?? 'auto';
  if (f !== 'auto') return f;
  if (isParquetFile(src.path)) return 'parquet';
  const ext = extname(src.path).toLowerCase();
  return ext === '.jsonl' || ext === '.ndjson' || ext === '.json' ? 'jsonl' : 'text';
}

/** An id as the ids text file holds it (one per line): a non-empty string without newline, CR or NUL. */
function checkId(id: string, where: string, file: string, field: string): string {
  if (id === '' || /[\n\r\0]/.test(id))
    throw new InputError(`${where}: field '${field}' ${id === '' ? 'is empty' : 'holds a newline, carriage return or NUL'}; ids are written one per line`, { file, key: 'id_field' });
  return id;
}

/** How far a read has come: `fraction` of the input (bytes read, or rows of a Parquet file). */
export interface ReadPosition {
  fraction: number;
}

/** The records of a source, in order; `position` (optional) follows the read. */
export async function* readTexts(src: TextSource, position?: ReadPosition): AsyncGenerator<TextRecord> {
  const format = textFormat(src);
  if (format === 'parquet') {
    yield* readParquetTexts(src, position);
    return;
  }
  const textField = src.textField ?? 'text';
  const size = statSync(src.path).size;
  const stream = createReadStream(src.path, { encoding: 'utf8' });
  if (position) stream.on('data', () => (position.fraction = size > 0 ? stream.bytesRead / size : 1));
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let lineNo = 0;
  let row = 0;
  for await (const line0 of lines) {
    lineNo++;
    const line = lineNo === 1 && line0.charCodeAt(0) === 0xfeff ? line0.slice(1) : line0;
    if (format === 'text') {
      yield { text: line, id: String(row++) };
      continue;
    }
    if (line.trim() === '') continue; // JSON Lines: blank lines are not records
    const where = `${src.path}: line ${lineNo}`;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      throw new InputError(`${where}: not valid JSON (${(e as Error).message})`, { file: src.path, key: 'input' });
    }
    if (!rec || typeof rec !== 'object' || Array.isArray(rec)) throw new InputError(`${where}: expected a JSON object per line`, { file: src.path, key: 'input' });
    const r = rec as Record<string, unknown>;
    const text = r[textField];
    if (typeof text !== 'string')
      throw new InputError(`${where}: field '${textField}' ${text === undefined ? 'is missing' : `is ${text === null ? 'null' : typeof text}`}; expected the text as a string (--text-field names the field)`, { file: src.path, key: 'text_field' });
    let id: string;
    if (src.idField !== undefined) {
      const v = r[src.idField];
      if (typeof v === 'string') id = checkId(v, where, src.path, src.idField);
      else if (typeof v === 'number' && Number.isSafeInteger(v)) id = String(v);
      else
        throw new InputError(`${where}: field '${src.idField}' ${v === undefined ? 'is missing' : `is ${v === null ? 'null' : typeof v === 'number' ? `the number ${v}` : typeof v}`}; expected a string or an integer id`, { file: src.path, key: 'id_field' });
    } else id = String(row);
    row++;
    yield { text, id };
  }
}

async function* readParquetTexts(src: TextSource, position?: ReadPosition): AsyncGenerator<TextRecord> {
  const { openParquetReader, describeParquet, sqlIdent: q, sqlString } = await import('../io/parquet.js');
  const reader = await openParquetReader(1);
  try {
    const info = await describeParquet(reader.con, src.path);
    const textField = src.textField ?? 'text';
    const need = (col: string, key: string, ok: RegExp, what: string) => {
      const t = info.columns.get(col);
      if (t === undefined) throw new InputError(`${src.path}: no column '${col}' (columns: ${[...info.columns.keys()].join(', ')})`, { file: src.path, key });
      if (!ok.test(t)) throw new InputError(`${src.path}: column '${col}' is ${t}; expected ${what}`, { file: src.path, key });
    };
    need(textField, 'text_field', /^VARCHAR$/, 'strings');
    if (src.idField !== undefined) need(src.idField, 'id_field', /^(VARCHAR|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$/, 'strings or integers');
    const file = sqlString(src.path);
    const res = await reader.con.stream(
      `SELECT ${q(textField)} AS t, ${src.idField !== undefined ? `CAST(${q(src.idField)} AS VARCHAR)` : 'NULL'} AS i, file_row_number AS r FROM read_parquet(${file}, file_row_number = true)`,
    );
    let row = 0;
    for (;;) {
      const chunk = await res.fetchChunk();
      if (!chunk || chunk.rowCount === 0) break;
      const tv = chunk.getColumnVector(0);
      const iv = chunk.getColumnVector(1);
      for (let k = 0; k < chunk.rowCount; k++) {
        const where = `${src.path}: row ${row}`;
        const text = tv.getItem(k);
        if (typeof text !== 'string') throw new InputError(`${where}: column '${textField}' is null; expected a string`, { file: src.path, key: 'text_field' });
        let id = String(row);
        if (src.idField !== undefined) {
          const v = iv.getItem(k);
          if (typeof v !== 'string') throw new InputError(`${where}: column '${src.idField}' is null; expected an id`, { file: src.path, key: 'id_field' });
          id = checkId(v, where, src.path, src.idField);
        }
        row++;
        if (position) position.fraction = info.rows > 0 ? row / info.rows : 1;
        yield { text, id };
      }
    }
  } finally {
    reader.close();
  }
}
