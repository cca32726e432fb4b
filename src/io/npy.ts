// NumPy .npy files (format versions 1.0, 2.0 and 3.0): a strict header parser, a reader and a
// writer whose output is byte-identical to numpy's `np.save` (numpy >= 1.24) for the same array.
//
// File layout: the magic "\x93NUMPY", major and minor version bytes, the header length
// (uint16 LE for 1.0, uint32 LE for 2.0/3.0), then the header: a Python dict literal
// "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }" padded with spaces and ended
// by '\n' so that the data starts at a multiple of 64 bytes. numpy also leaves room for the
// first axis to grow to 21 digits (extra spaces before the alignment padding).

import * as fs from 'node:fs';
import * as os from 'node:os';
import { InputError, OutputError } from '../errors.js';
import { openAtomicWriter } from './atomic.js';

export type NpyKind = 'f' | 'i' | 'u' | 'b' | 'S' | 'U';

export interface NpyDtype {
  kind: NpyKind;
  /** Bytes per element (for 'U', 4 × the number of characters). */
  itemsize: number;
  littleEndian: boolean;
}

export interface NpyHeader {
  /** The descr string as stored, e.g. '<f4', '|S24'. */
  descr: string;
  fortranOrder: boolean;
  shape: number[];
  /** Byte offset of the first data byte. */
  dataOffset: number;
  dtype: NpyDtype;
  /** Format version [major, minor]. */
  version: [number, number];
}

export type NpyNumericData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array;

export type NpyData = NpyNumericData | string[];

export const NPY_MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const ARRAY_ALIGN = 64;
const GROWTH_AXIS_MAX_DIGITS = 21;
/** Python's ast.literal_eval limit used by numpy for untrusted headers. */
const MAX_HEADER_LEN = 10000;

if (os.endianness() !== 'LE') {
  // Typed arrays use the host byte order; every format handled here is little-endian.
  throw new Error('semdedup .npy support requires a little-endian host');
}

/** numpy's name of a dtype, for messages: float32, int64, bool, S24, U8. */
export function dtypeName(dt: NpyDtype): string {
  switch (dt.kind) {
    case 'f':
      return `float${dt.itemsize * 8}`;
    case 'i':
      return `int${dt.itemsize * 8}`;
    case 'u':
      return `uint${dt.itemsize * 8}`;
    case 'b':
      return 'bool';
    case 'S':
      return `S${dt.itemsize}`;
    case 'U':
      return `U${dt.itemsize / 4}`;
  }
}

/** Python's repr of a shape tuple: (), (3,), (3, 4). */
export function shapeRepr(shape: readonly number[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parse a descr string. Returns the dtype or a reason why it is not supported.
 */
export function parseDescr(descr: string): NpyDtype | string {
  const m = /^([<>|=]?)([a-zA-Z])(\d+)$/.exec(descr);
  if (!m) {
    // One-letter forms numpy also accepts in descr strings.
    if (descr === '?' || descr === '|?' || descr === 'b1') return { kind: 'b', itemsize: 1, littleEndian: true };
    return `unsupported dtype descr ${pyStr(descr)}`;
  }
  const order = m[1] as string;
  const code = m[2] as string;
  const size = Number(m[3]);
  let kind: NpyKind;
  let itemsize = size;
  switch (code) {
    case 'f':
      if (size !== 2 && size !== 4 && size !== 8) return `unsupported float size in descr ${pyStr(descr)}`;
      kind = 'f';
      break;
    case 'i':
    case 'u':
      if (size !== 1 && size !== 2 && size !== 4 && size !== 8) return `unsupported integer size in descr ${pyStr(descr)}`;
      kind = code;
      break;
    case 'b':
      if (size !== 1) return `unsupported descr ${pyStr(descr)}`;
      kind = 'b';
      break;
    case 'S':
      kind = 'S';
      break;
    case 'U':
      kind = 'U';
      itemsize = size * 4;
      break;
    default:
      return `unsupported dtype descr ${pyStr(descr)} (only float, int, uint, bool, S and U arrays are read)`;
  }
  if ((kind === 'S' || kind === 'U') && size === 0) return `unsupported descr ${pyStr(descr)} (zero-width strings)`;
  const singleByte = itemsize === 1 || kind === 'S';
  if (order === '>' && !singleByte) return `big-endian data (descr ${pyStr(descr)}) is not supported; convert with arr.astype(arr.dtype.newbyteorder('<'))`;
  return { kind, itemsize, littleEndian: true };
}

function pyStr(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

// ---------------------------------------------------------------------------------------------
// A small parser for the Python literal in the header: a dict with string keys whose values are
// strings, True/False, or tuples of non-negative integers.

type PyValue = string | boolean | number[] | null;

class HeaderSyntaxError extends Error {}

function parseHeaderDict(text: string): Map<string, PyValue> {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const expect = (c: string) => {
    ws();
    if (text[i] !== c) throw new HeaderSyntaxError(`expected '${c}' at offset ${i}`);
    i++;
  };
  const parseString = (): string => {
    ws();
    const q = text[i];
    if (q !== "'" && q !== '"') throw new HeaderSyntaxError(`expected a string at offset ${i}`);
    i++;
    let out = '';
    while (i < n && text[i] !== q) {
      if (text[i] === '\\') {
        const c = text[i + 1];
        if (c === undefined) break;
        out += c === 'n' ? '\n' : c === 't' ? '\t' : c;
        i += 2;
      } else {
        out += text[i];
        i++;
      }
    }
    if (i >= n) throw new HeaderSyntaxError('unterminated string');
    i++;
    return out;
  };
  const parseInt_ = (): number => {
    ws();
    const m = /^\d+L?/.exec(text.slice(i, i + 40));
    if (!m) throw new HeaderSyntaxError(`expected a non-negative integer at offset ${i}`);
    i += m[0].length;
    const v = Number(m[0].replace('L', ''));
    if (!Number.isSafeInteger(v)) throw new HeaderSyntaxError(`dimension ${m[0]} is too large`);
    return v;
  };
  const parseValue = (): PyValue => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') return parseString();
    if (c === '(') {
      i++;
      const dims: number[] = [];
      ws();
      if (text[i] === ')') {
        i++;
        return dims;
      }
      for (;;) {
        dims.push(parseInt_());
        ws();
        if (text[i] === ',') {
          i++;
          ws();
          if (text[i] === ')') {
            i++;
            break;
          }
          continue;
        }
        if (text[i] === ')') {
          if (dims.length === 1) throw new HeaderSyntaxError('a one-element shape needs a trailing comma');
          i++;
          break;
        }
        throw new HeaderSyntaxError(`expected ',' or ')' in shape at offset ${i}`);
      }
      return dims;
    }
    if (text.startsWith('True', i)) {
      i += 4;
      return true;
    }
    if (text.startsWith('False', i)) {
      i += 5;
      return false;
    }
    if (c === '[') throw new HeaderSyntaxError('structured dtypes are not supported');
    throw new HeaderSyntaxError(`unexpected value at offset ${i}`);
  };
  const out = new Map<string, PyValue>();
  expect('{');
  for (;;) {
    ws();
    if (text[i] === '}') {
      i++;
      break;
    }
    const key = parseString();
    expect(':');
    const value = parseValue();
    if (out.has(key)) throw new HeaderSyntaxError(`duplicate key '${key}'`);
    out.set(key, value);
    ws();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === '}') {
      i++;
      break;
    }
    throw new HeaderSyntaxError(`expected ',' or '}' at offset ${i}`);
  }
  ws();
  if (i !== n) throw new HeaderSyntaxError(`unexpected text after the dict at offset ${i}`);
  return out;
}

/**
 * Parse the header of a .npy file from `buf` (the whole file, or at least its first
 * dataOffset bytes). `fileSize` (default buf.length) is used for the truncation message.
 * Throws InputError naming `file` and what is wrong.
 */
export function parseNpyHeader(buf: Uint8Array, file: string, fileSize: number = buf.length): NpyHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const err = (msg: string) => new InputError(`${file}: ${msg}`, { file });
  if (b.length < 6 || !b.subarray(0, 6).equals(NPY_MAGIC)) {
    if (fileSize < 6 && NPY_MAGIC.subarray(0, b.length).equals(b.subarray(0, 6)))
      throw err(`truncated .npy file (${fileSize} bytes)`);
    throw err('not a .npy file (bad magic: expected \\x93NUMPY)');
  }
  if (b.length < 8) throw err(`truncated .npy header (file has ${fileSize} bytes)`);
  const major = b[6] as number;
  const minor = b[7] as number;
  let lenBytes: number;
  let encoding: 'latin1' | 'utf8';
  if (major === 1 && minor === 0) {
    lenBytes = 2;
    encoding = 'latin1';
  } else if (major === 2 && minor === 0) {
    lenBytes = 4;
    encoding = 'latin1';
  } else if (major === 3 && minor === 0) {
    lenBytes = 4;
    encoding = 'utf8';
  } else {
    throw err(`unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  }
  if (b.length < 8 + lenBytes) throw err(`truncated .npy header (file has ${fileSize} bytes)`);
  const headerLen = lenBytes === 2 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = 8 + lenBytes;
  const dataOffset = start + headerLen;
  if (dataOffset > fileSize) {
    throw err(`truncated .npy header (header_len ${headerLen} but file has ${fileSize} bytes)`);
  }
  if (headerLen > MAX_HEADER_LEN + 64) throw err(`.npy header is too large (header_len ${headerLen})`);
  if (dataOffset > b.length) throw err(`only ${b.length} bytes of the .npy header were given (header_len ${headerLen})`);
  let text: string;
  if (encoding === 'utf8') {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(start, dataOffset));
    } catch {
      throw err('.npy header is not valid UTF-8');
    }
  } else {
    text = b.toString('latin1', start, dataOffset);
  }
  let dict: Map<string, PyValue>;
  try {
    dict = parseHeaderDict(text);
  } catch (e) {
    const why = e instanceof HeaderSyntaxError ? e.message : String(e);
    throw err(`malformed .npy header (${why}): ${JSON.stringify(text.trimEnd())}`);
  }
  const keys = [...dict.keys()].sort();
  if (keys.join(',') !== 'descr,fortran_order,shape') {
    throw err(`malformed .npy header: keys must be 'descr', 'fortran_order', 'shape', found ${keys.map(pyStr).join(', ') || 'none'}`);
  }
  const descr = dict.get('descr');
  const fortran = dict.get('fortran_order');
  const shape = dict.get('shape');
  if (typeof descr !== 'string') throw err('malformed .npy header: descr is not a string (structured dtypes are not supported)');
  if (typeof fortran !== 'boolean') throw err('malformed .npy header: fortran_order is not True or False');
  if (!Array.isArray(shape)) throw err('malformed .npy header: shape is not a tuple of integers');
  const dtype = parseDescr(descr);
  if (typeof dtype === 'string') throw err(dtype);
  if (fortran && shape.filter((d) => d !== 1).length > 1) {
    throw err(`Fortran-ordered arrays are not supported (shape ${shapeRepr(shape)}); save a C-ordered copy with np.ascontiguousarray`);
  }
  const count = shapeSize(shape);
  if (!Number.isSafeInteger(count * dtype.itemsize)) throw err(`shape ${shapeRepr(shape)} is too large`);
  return { descr, fortranOrder: fortran, shape, dataOffset, dtype, version: [major, minor] };
}

/** Number of data bytes the header describes. */
export function npyDataBytes(h: NpyHeader): number {
  return shapeSize(h.shape) * h.dtype.itemsize;
}

function sizeMismatch(file: string, h: NpyHeader, found: number): InputError {
  const expected = npyDataBytes(h);
  const what = `${shapeRepr(h.shape)} ${dtypeName(h.dtype)}`;
  if (found < expected)
    return new InputError(`${file}: file is truncated: expected ${expected} bytes of data for shape ${what}, found ${found}`, { file });
  return new InputError(
    `${file}: file has ${found - expected} unexpected bytes after the data: expected ${expected} bytes of data for shape ${what}, found ${found}`,
    { file },
  );
}

function openForRead(file: string): number {
  try {
    return fs.openSync(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (e as Error).message;
    throw new InputError(`${file}: cannot read: ${why}`, { file, cause: e });
  }
}

function readHeaderFromFd(fd: number, file: string): { header: NpyHeader; fileSize: number } {
  const fileSize = fs.fstatSync(fd).size;
  const first = Buffer.alloc(Math.min(fileSize, 12));
  fs.readSync(fd, first, 0, first.length, 0);
  let need = first.length;
  if (first.length >= 10 && first.subarray(0, 6).equals(NPY_MAGIC)) {
    if (first[6] === 1 && first.length >= 10) need = 10 + first.readUInt16LE(8);
    else if (first.length >= 12) need = 12 + first.readUInt32LE(8);
  }
  need = Math.min(need, fileSize, MAX_HEADER_LEN + 200);
  const buf = Buffer.alloc(need);
  fs.readSync(fd, buf, 0, need, 0);
  const header = parseNpyHeader(buf, file, fileSize);
  return { header, fileSize };
}

/**
 * Read and check the header of a .npy file, reading only its first bytes. Also checks that the
 * file size equals dataOffset + the data size the header describes.
 */
export function readNpyHeaderFromFile(file: string): NpyHeader {
  const fd = openForRead(file);
  try {
    const { header, fileSize } = readHeaderFromFd(fd, file);
    const found = fileSize - header.dataOffset;
    if (found !== npyDataBytes(header)) throw sizeMismatch(file, header, found);
    return header;
  } finally {
    fs.closeSync(fd);
  }
}

/** Read `length` bytes at `position` into `dst`, in pieces (no 2 GiB single-read limit). */
export function readFully(fd: number, dst: Uint8Array, position: number, file: string): void {
  let off = 0;
  while (off < dst.byteLength) {
    const len = Math.min(dst.byteLength - off, 1 << 30);
    const n = fs.readSync(fd, dst, off, len, position + off);
    if (n <= 0) throw new InputError(`${file}: unexpected end of file`, { file });
    off += n;
  }
}

function allocNumeric(dt: NpyDtype, count: number): NpyNumericData {
  switch (dt.kind) {
    case 'f':
      return dt.itemsize === 4 ? new Float32Array(count) : dt.itemsize === 8 ? new Float64Array(count) : new Uint16Array(count);
    case 'i':
      return dt.itemsize === 1
        ? new Int8Array(count)
        : dt.itemsize === 2
          ? new Int16Array(count)
          : dt.itemsize === 4
            ? new Int32Array(count)
            : new BigInt64Array(count);
    case 'u':
      return dt.itemsize === 1
        ? new Uint8Array(count)
        : dt.itemsize === 2
          ? new Uint16Array(count)
          : dt.itemsize === 4
            ? new Uint32Array(count)
            : new BigUint64Array(count);
    case 'b':
      return new Uint8Array(count);
    default:
      throw new Error(`not a numeric dtype: ${dt.kind}`);
  }
}

// ignoreBOM: a leading U+FEFF is part of the id, as Python's bytes.decode('utf-8') keeps it.
const utf8Fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decode one S item (trailing NULs stripped, as numpy's bytes scalars) as UTF-8. */
export function decodeSItem(bytes: Uint8Array, file: string, index: number): string {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  try {
    return utf8Fatal.decode(bytes.subarray(0, end));
  } catch {
    throw new InputError(`${file}: item ${index} is not valid UTF-8`, { file });
  }
}

/** Decode one U item (UTF-32LE, trailing NULs stripped, as numpy's str scalars). */
export function decodeUItem(bytes: Uint8Array, file: string, index: number): string {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let end = bytes.length >> 2;
  while (end > 0 && dv.getUint32((end - 1) * 4, true) === 0) end--;
  let out = '';
  for (let k = 0; k < end; k++) {
    const cp = dv.getUint32(k * 4, true);
    if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
      throw new InputError(`${file}: item ${index} holds an invalid code point 0x${cp.toString(16)}`, { file });
    }
    out += String.fromCodePoint(cp);
  }
  return out;
}

/**
 * Read a whole .npy file. Numeric data comes back as a typed array (float16 as the raw bits in
 * a Uint16Array, bool as a Uint8Array of 0/1); S and U arrays as decoded strings.
 */
export function readNpy(file: string): { header: NpyHeader; data: NpyData } {
  const fd = openForRead(file);
  try {
    const { header, fileSize } = readHeaderFromFd(fd, file);
    const found = fileSize - header.dataOffset;
    const nbytes = npyDataBytes(header);
    if (found !== nbytes) throw sizeMismatch(file, header, found);
    const count = shapeSize(header.shape);
    const dt = header.dtype;
    if (dt.kind === 'S' || dt.kind === 'U') {
      const raw = Buffer.alloc(nbytes);
      readFully(fd, raw, header.dataOffset, file);
      const out: string[] = new Array(count);
      for (let i = 0; i < count; i++) {
        const item = raw.subarray(i * dt.itemsize, (i + 1) * dt.itemsize);
        out[i] = dt.kind === 'S' ? decodeSItem(item, file, i) : decodeUItem(item, file, i);
      }
      return { header, data: out };
    }
    const data = allocNumeric(dt, count);
    readFully(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.dataOffset, file);
    if (dt.kind === 'b') {
      const u = data as Uint8Array;
      for (let i = 0; i < u.length; i++) {
        if (u[i]! > 1) throw new InputError(`${file}: bool item ${i} holds ${u[i]} (not 0 or 1)`, { file });
      }
    }
    return { header, data };
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * The header bytes numpy writes for an array of `descr` and `shape` (C order): version 1.0
 * unless the header is too long for it (then 2.0, or 3.0 when it is not latin1). The returned
 * length is a multiple of 64 and is the data offset.
 */
export function npyHeaderBytes(descr: string, shape: readonly number[], fortranOrder = false): Buffer {
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`invalid dimension ${d} in shape ${shapeRepr(shape)}`);
  }
  let dict = `{'descr': ${pyStr(descr)}, 'fortran_order': ${fortranOrder ? 'True' : 'False'}, 'shape': ${shapeRepr(shape)}, }`;
  if (shape.length > 0) {
    const axis = shape[fortranOrder ? shape.length - 1 : 0] as number;
    dict += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(axis).length));
  }
  const isLatin1 = /^[\x00-\xff]*$/.test(dict);
  const wrap = (major: number, lenBytes: number, enc: 'latin1' | 'utf8'): Buffer | null => {
    const body = Buffer.from(dict, enc);
    const hlen = body.length + 1;
    const padlen = ARRAY_ALIGN - ((6 + 2 + lenBytes + hlen) % ARRAY_ALIGN);
    const total = hlen + padlen;
    if (lenBytes === 2 && total > 0xffff) return null;
    const out = Buffer.alloc(8 + lenBytes + total, 0x20);
    NPY_MAGIC.copy(out, 0);
    out[6] = major;
    out[7] = 0;
    if (lenBytes === 2) out.writeUInt16LE(total, 8);
    else out.writeUInt32LE(total, 8);
    body.copy(out, 8 + lenBytes);
    out[out.length - 1] = 0x0a;
    return out;
  };
  if (isLatin1) {
    const v1 = wrap(1, 2, 'latin1');
    if (v1) return v1;
    return wrap(2, 4, 'latin1') as Buffer;
  }
  return wrap(3, 4, 'utf8') as Buffer;
}

export interface WriteNpyOptions {
  /** Shape of the array (C order); default [length]. Its product must equal the length. */
  shape?: readonly number[];
  /** Write a Uint8Array as numpy bool ('|b1') instead of uint8. */
  bool?: boolean;
  /** Write a Uint16Array as float16 raw bits ('<f2') instead of uint16. */
  float16?: boolean;
  /** For string arrays: '<U{w}' (default) or '|S{w}' (UTF-8 bytes). */
  strKind?: 'U' | 'S';
  /** For string arrays: the item width (characters for U, bytes for S); default the longest, at least 1. */
  width?: number;
}

export type NpyWritable = NpyNumericData | readonly string[];

function numericDescr(a: NpyNumericData, opts: WriteNpyOptions): string {
  if (a instanceof Float32Array) return '<f4';
  if (a instanceof Float64Array) return '<f8';
  if (a instanceof BigInt64Array) return '<i8';
  if (a instanceof BigUint64Array) return '<u8';
  if (a instanceof Int32Array) return '<i4';
  if (a instanceof Uint32Array) return '<u4';
  if (a instanceof Int16Array) return '<i2';
  if (a instanceof Uint16Array) return opts.float16 ? '<f2' : '<u2';
  if (a instanceof Int8Array) return '|i1';
  if (a instanceof Uint8Array) return opts.bool ? '|b1' : '|u1';
  throw new Error('unsupported array type');
}

/** Encode strings as fixed-width S (UTF-8, NUL padded) or U (UTF-32LE) items. */
export function encodeStrings(
  items: readonly string[],
  kind: 'U' | 'S',
  width: number | undefined,
  file: string,
): { descr: string; width: number; bytes: Buffer } {
  if (kind === 'S') {
    const enc = items.map((s) => Buffer.from(s, 'utf8'));
    const w = width ?? enc.reduce((m, e) => Math.max(m, e.length), 1);
    enc.forEach((e, i) => {
      if (e.length > w) throw new OutputError(`${file}: item ${i} is ${e.length} bytes in UTF-8, longer than the width S${w}`, { file });
    });
    const bytes = Buffer.alloc(items.length * w);
    enc.forEach((e, i) => e.copy(bytes, i * w));
    return { descr: `|S${w}`, width: w, bytes };
  }
  const cps = items.map((s) => Array.from(s, (c) => c.codePointAt(0) as number));
  const w = width ?? cps.reduce((m, c) => Math.max(m, c.length), 1);
  const bytes = Buffer.alloc(items.length * w * 4);
  cps.forEach((c, i) => {
    if (c.length > w) throw new OutputError(`${file}: item ${i} has ${c.length} characters, longer than the width U${w}`, { file });
    for (let k = 0; k < c.length; k++) bytes.writeUInt32LE(c[k] as number, (i * w + k) * 4);
  });
  return { descr: `<U${w}`, width: w, bytes };
}

/**
 * Write `array` to `file` as np.save would, atomically (temporary file + fsync + rename).
 * Throws OutputError naming the file on failure.
 */
export function writeNpy(file: string, array: NpyWritable, opts: WriteNpyOptions = {}): void {
  const length = array.length;
  const shape = opts.shape ? [...opts.shape] : [length];
  if (shapeSize(shape) !== length) {
    throw new OutputError(`${file}: shape ${shapeRepr(shape)} does not match ${length} items`, { file });
  }
  let descr: string;
  let body: Uint8Array;
  if (Array.isArray(array)) {
    const enc = encodeStrings(array as readonly string[], opts.strKind ?? 'U', opts.width, file);
    descr = enc.descr;
    body = enc.bytes;
  } else {
    const a = array as NpyNumericData;
    descr = numericDescr(a, opts);
    body = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    if (opts.bool) {
      const u = a as Uint8Array;
      for (let i = 0; i < u.length; i++) {
        if (u[i]! > 1) throw new OutputError(`${file}: bool item ${i} holds ${u[i]} (not 0 or 1)`, { file });
      }
    }
  }
  const header = npyHeaderBytes(descr, shape);
  const w = openAtomicWriter(file);
  try {
    w.write(header);
    w.write(body);
  } catch (e) {
    w.abort();
    throw e;
  }
  w.commit();
}
