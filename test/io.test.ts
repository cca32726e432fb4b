// Tests of the file formats: .npy reading and writing (byte-identical to numpy's np.save),
// ids files, atomic writes, Python/numpy float text forms and the sorted-cluster string arrays.
//
// numpy is the reference: these tests run /usr/bin/python3 with numpy and FAIL (never skip)
// when it is missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { InputError, OutputError } from '../src/errors.js';
import { atomicWriteFile } from '../src/io/atomic.js';
import { npyHeaderBytes, parseNpyHeader, readNpy, readNpyHeaderFromFile, writeNpy } from '../src/io/npy.js';
import { checkUniqueIds, idsFromStrings, readIds, rowNumberIds, writeIdsMemmap } from '../src/io/ids.js';
import { formatNpFloat32, formatPyFloat, sortedClusterArray, writeSortedCluster } from '../src/io/pyrepr.js';
import { referencePython, rng } from './helpers.js';

const PYTHON = referencePython(['numpy']);

let pythonProblem: string | null | undefined;
function requirePython(): void {
  if (pythonProblem === undefined) {
    try {
      const v = execFileSync(PYTHON, ['-c', 'import numpy; print(numpy.__version__)'], { encoding: 'utf8' });
      pythonProblem = /^\d+\.\d+/.test(v.trim()) ? null : `unexpected numpy version output ${JSON.stringify(v)}`;
    } catch (e) {
      pythonProblem = (e as Error).message;
    }
  }
  if (pythonProblem !== null) {
    assert.fail(
      `these tests need ${PYTHON} with numpy as the reference implementation (install python3 and python3-numpy): ${pythonProblem}`,
    );
  }
}

/** Run a Python snippet with numpy; `input` is available to it as the JSON value `inp`. */
function py(code: string, input: unknown = null): string {
  requirePython();
  const prelude = 'import sys, json, numpy as np\ninp = json.loads(sys.stdin.read())\n';
  return execFileSync(PYTHON, ['-c', prelude + code], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
}

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'semdedup-io-test-'));
process.on('exit', () => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;
function tmpDir(): string {
  const d = path.join(tmpRoot, `t${tmpCount++}`);
  fs.mkdirSync(d);
  return d;
}

function assertInputError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected InputError, got ${String(e)}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

function bytesEqual(ours: string, theirs: string): void {
  const a = fs.readFileSync(ours);
  const b = fs.readFileSync(theirs);
  if (!a.equals(b)) {
    const n = Math.min(a.length, b.length);
    let i = 0;
    while (i < n && a[i] === b[i]) i++;
    assert.fail(
      `${path.basename(ours)} differs from numpy's file at byte ${i} (sizes ${a.length} vs ${b.length}):\n` +
        `ours:  ${JSON.stringify(a.subarray(0, 200).toString('latin1'))}\nnumpy: ${JSON.stringify(b.subarray(0, 200).toString('latin1'))}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------

test('reference python with numpy is available', () => {
  requirePython();
});

test('writeNpy output is byte-identical to np.save', () => {
  const dir = tmpDir();
  const f32 = Float32Array.from({ length: 15 }, (_, i) => (i - 7) / 3);
  const f64 = Float64Array.from([0.1, -2.5, 1e300, 5e-324, 3]);
  const i64 = BigInt64Array.from([0n, -1n, 9007199254740993n, -(2n ** 63n)]);
  const i32 = Int32Array.from([1, -2, 2147483647]);
  const bools = Uint8Array.from([1, 0, 0, 1, 1]);
  const sIds = ['n04235860_14959.JPEG', 'a', 'x'.repeat(24)];
  const uIds = ['héllo', 'a', '', '日本語', '😀x'];
  const manyDims = [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3];
  const cases: { name: string; write: (p: string) => void; py: string }[] = [
    { name: 'f32_2d', write: (p) => writeNpy(p, f32, { shape: [3, 5] }), py: `np.array(inp['f32'], dtype=np.float32).reshape(3, 5)` },
    { name: 'f64', write: (p) => writeNpy(p, f64), py: `np.array(inp['f64'], dtype=np.float64)` },
    { name: 'i64', write: (p) => writeNpy(p, i64), py: `np.array([int(s) for s in inp['i64']], dtype=np.int64)` },
    { name: 'i32', write: (p) => writeNpy(p, i32), py: `np.array(inp['i32'], dtype=np.int32)` },
    { name: 'bool', write: (p) => writeNpy(p, bools, { bool: true }), py: `np.array(inp['bools'], dtype=bool)` },
    { name: 's24', write: (p) => writeNpy(p, sIds, { strKind: 'S', width: 24 }), py: `np.array([s.encode() for s in inp['sIds']], dtype='S24')` },
    { name: 's_auto', write: (p) => writeNpy(p, sIds, { strKind: 'S' }), py: `np.array([s.encode() for s in inp['sIds']])` },
    { name: 'u', write: (p) => writeNpy(p, uIds), py: `np.array(inp['uIds'])` },
    { name: 'empty_u', write: (p) => writeNpy(p, ['', '']), py: `np.array(['', ''])` },
    { name: 'scalar', write: (p) => writeNpy(p, Float32Array.of(1.5), { shape: [] }), py: `np.float32(1.5)` },
    { name: 'empty', write: (p) => writeNpy(p, new BigInt64Array(0)), py: `np.zeros((0,), dtype=np.int64)` },
    { name: 'zero_rows_2d', write: (p) => writeNpy(p, new Float32Array(0), { shape: [0, 768] }), py: `np.zeros((0, 768), dtype=np.float32)` },
    {
      name: 'many_dims',
      write: (p) => writeNpy(p, Float32Array.from([1, 2, 3, 4, 5, 6]), { shape: manyDims }),
      py: `np.arange(1, 7, dtype=np.float32).reshape(${JSON.stringify(manyDims)})`,
    },
    { name: 'f16', write: (p) => writeNpy(p, Uint16Array.from([0x3c00, 0xc000, 0x7c00]), { float16: true }), py: `np.array([1, -2, np.inf], dtype=np.float16)` },
  ];
  const input = {
    dir,
    f32: Array.from(f32),
    f64: Array.from(f64),
    i64: Array.from(i64, String),
    i32: Array.from(i32),
    bools: Array.from(bools),
    sIds,
    uIds,
  };
  const code = cases.map((c) => `np.save(inp['dir'] + '/ref_${c.name}.npy', ${c.py})`).join('\n');
  py(code, input);
  for (const c of cases) {
    const ours = path.join(dir, `ours_${c.name}.npy`);
    c.write(ours);
    bytesEqual(ours, path.join(dir, `ref_${c.name}.npy`));
  }
  // The header alone is what npyHeaderBytes gives, and is 64-aligned.
  const h = npyHeaderBytes('<f4', [3, 5]);
  assert.equal(h.length % 64, 0);
  assert.ok(fs.readFileSync(path.join(dir, 'ref_f32_2d.npy')).subarray(0, h.length).equals(h));
  assert.equal(npyHeaderBytes('<f4', manyDims).length, 192);
});

test('round trip of every dtype through writeNpy and readNpy', () => {
  const dir = tmpDir();
  const arrays: [string, Parameters<typeof writeNpy>[1], Parameters<typeof writeNpy>[2], string][] = [
    ['f4', Float32Array.from([1.5, -0, NaN, Infinity, 1e-45]), {}, '<f4'],
    ['f8', Float64Array.from([Math.PI, -1e-300, NaN]), {}, '<f8'],
    ['f2', Uint16Array.from([0x3c00, 0x8001, 0x7e00]), { float16: true }, '<f2'],
    ['i1', Int8Array.from([-128, 0, 127]), {}, '|i1'],
    ['i2', Int16Array.from([-32768, 5]), {}, '<i2'],
    ['i4', Int32Array.from([-5, 2 ** 31 - 1]), {}, '<i4'],
    ['i8', BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]), {}, '<i8'],
    ['u1', Uint8Array.from([0, 255, 7]), {}, '|u1'],
    ['u2', Uint16Array.from([65535, 1]), {}, '<u2'],
    ['u4', Uint32Array.from([2 ** 32 - 1]), {}, '<u4'],
    ['u8', BigUint64Array.from([2n ** 64n - 1n]), {}, '<u8'],
    ['b1', Uint8Array.from([1, 0, 1]), { bool: true }, '|b1'],
    ['S', ['abc', 'é', ''], { strKind: 'S' }, '|S3'],
    ['U', ['abc', '😀', ''], { strKind: 'U', width: 7 }, '<U7'],
    ['f4_2d', Float32Array.from({ length: 12 }, (_, i) => i * 0.25), { shape: [4, 3] }, '<f4'],
  ];
  for (const [name, arr, opts, descr] of arrays) {
    const p = path.join(dir, `${name}.npy`);
    writeNpy(p, arr, opts);
    const { header, data } = readNpy(p);
    assert.equal(header.descr, descr, name);
    assert.deepEqual(header.shape, opts?.shape ? [...opts.shape] : [arr.length], name);
    assert.equal(header.dataOffset % 64, 0);
    assert.deepEqual(header.version, [1, 0]);
    if (Array.isArray(arr)) assert.deepEqual(data, arr, name);
    else {
      assert.equal(data.constructor, arr.constructor, name);
      assert.ok(Buffer.from((data as Uint8Array).buffer).equals(Buffer.from((arr as Uint8Array).buffer)), name);
    }
    assert.deepEqual(readNpyHeaderFromFile(p), header);
  }
  // numpy reads what we wrote, with the same values.
  const out = py(
    `import os
res = {}
for f in sorted(os.listdir(inp)):
    a = np.load(os.path.join(inp, f))
    res[f] = [a.dtype.str, list(a.shape), repr(a.tolist())]
print(json.dumps(res))`,
    dir,
  );
  const res = JSON.parse(out) as Record<string, [string, number[], string]>;
  assert.deepEqual(res['f4.npy'], ['<f4', [5], '[1.5, -0.0, nan, inf, 1.401298464324817e-45]']);
  assert.deepEqual(res['i8.npy'], ['<i8', [2], '[-9223372036854775808, 9223372036854775807]']);
  assert.deepEqual(res['u8.npy'], ['<u8', [1], '[18446744073709551615]']);
  assert.deepEqual(res['b1.npy'], ['|b1', [3], '[True, False, True]']);
  assert.deepEqual(res['S.npy'], ['|S3', [3], "[b'abc', b'\\xc3\\xa9', b'']"]);
  assert.deepEqual(res['U.npy'], ['<U7', [3], "['abc', '😀', '']"]);
  assert.deepEqual(res['f2.npy']?.[2], '[1.0, -5.960464477539063e-08, nan]');
  assert.deepEqual(res['f4_2d.npy']?.[1], [4, 3]);
});

test('reads numpy-written float16, v2.0/v3.0 headers, S and U arrays', () => {
  const dir = tmpDir();
  const out = py(
    `d = inp
h = np.array([0.5, -1.25, 65504, 6e-8, np.nan, -np.inf], dtype=np.float16)
np.save(d + '/h.npy', h)
a = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
with open(d + '/v2.npy', 'wb') as f:
    np.lib.format.write_array(f, a, version=(2, 0))
with open(d + '/v3.npy', 'wb') as f:
    np.lib.format.write_array(f, a, version=(3, 0))
np.save(d + '/s.npy', np.array([b'ab', b'c\\x00d', b'']))
np.save(d + '/u.npy', np.array(['ab', 'ü', '']))
np.save(d + '/i64.npy', np.array([[1, -2], [3, 4]], dtype=np.int64))
print(json.dumps({'h': h.view('<u2').tolist(), 'a': a.ravel().tolist()}))`,
    dir,
  );
  const ref = JSON.parse(out) as { h: number[]; a: number[] };
  const h = readNpy(path.join(dir, 'h.npy'));
  assert.equal(h.header.descr, '<f2');
  assert.equal(h.header.dtype.kind, 'f');
  assert.equal(h.header.dtype.itemsize, 2);
  assert.ok(h.data instanceof Uint16Array);
  assert.deepEqual(Array.from(h.data), ref.h);
  for (const v of ['v2', 'v3']) {
    const r = readNpy(path.join(dir, `${v}.npy`));
    assert.deepEqual(r.header.version, [v === 'v2' ? 2 : 3, 0]);
    assert.deepEqual(r.header.shape, [2, 3]);
    assert.ok(r.data instanceof Float64Array);
    assert.deepEqual(Array.from(r.data), ref.a);
  }
  assert.deepEqual(readNpy(path.join(dir, 's.npy')).data, ['ab', 'c\0d', '']);
  assert.deepEqual(readNpy(path.join(dir, 'u.npy')).data, ['ab', 'ü', '']);
  const i = readNpy(path.join(dir, 'i64.npy'));
  assert.ok(i.data instanceof BigInt64Array);
  assert.deepEqual(Array.from(i.data), [1n, -2n, 3n, 4n]);
});

test('bad .npy files are InputErrors naming the file and the problem', () => {
  const dir = tmpDir();
  py(
    `d = inp
np.save(d + '/good.npy', np.zeros((10, 4), dtype=np.float32))
np.save(d + '/fortran.npy', np.asfortranarray(np.zeros((3, 4), dtype=np.float32)))
np.save(d + '/big.npy', np.zeros((3,), dtype='>f4'))
np.save(d + '/complex.npy', np.zeros((3,), dtype=np.complex64))
np.save(d + '/obj.npy', np.array([{}, 1], dtype=object), allow_pickle=True)
np.save(d + '/rec.npy', np.zeros((2,), dtype=[('a', '<f4'), ('b', '<i4')]))`,
    dir,
  );
  const good = fs.readFileSync(path.join(dir, 'good.npy'));
  const write = (name: string, buf: Uint8Array) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, buf);
    return p;
  };
  // truncated header
  const trunc = write('embeddings.npy', good.subarray(0, 60));
  assertInputError(() => readNpy(trunc), /embeddings\.npy: truncated \.npy header \(header_len 118 but file has 60 bytes\)/);
  assertInputError(() => readNpyHeaderFromFile(trunc), /truncated \.npy header/);
  assertInputError(() => parseNpyHeader(good.subarray(0, 9), 'x.npy'), /^x\.npy: truncated \.npy header/);
  // bad magic
  const badMagic = Buffer.from(good);
  badMagic[1] = 0x4f;
  assertInputError(() => readNpy(write('magic.npy', badMagic)), /magic\.npy: not a \.npy file \(bad magic/);
  assertInputError(() => readNpy(write('empty.npy', Buffer.alloc(0))), /empty\.npy: truncated \.npy file \(0 bytes\)/);
  // header_len beyond the file
  const bigLen = Buffer.from(good);
  bigLen.writeUInt16LE(5000, 8);
  assertInputError(() => readNpy(write('biglen.npy', bigLen)), /biglen\.npy: truncated \.npy header \(header_len 5000 but file has 288 bytes\)/);
  // unsupported version
  const v9 = Buffer.from(good);
  v9[6] = 9;
  assertInputError(() => readNpy(write('v9.npy', v9)), /unsupported \.npy format version 9\.0/);
  // data truncated / extra bytes
  const short = write('short.npy', good.subarray(0, good.length - 3));
  assertInputError(
    () => readNpyHeaderFromFile(short),
    /short\.npy: file is truncated: expected 160 bytes of data for shape \(10, 4\) float32, found 157/,
  );
  assertInputError(() => readNpy(short), /file is truncated/);
  const long = write('long.npy', Buffer.concat([good, Buffer.alloc(4)]));
  assertInputError(() => readNpy(long), /long\.npy: file has 4 unexpected bytes after the data/);
  // malformed dict
  const mal = Buffer.from(good);
  mal.write("{'descr': '<f4' 'fortran_order'", 10, 'latin1');
  assertInputError(() => readNpy(write('mal.npy', mal)), /mal\.npy: malformed \.npy header/);
  const keys = Buffer.from(good);
  keys.write("{'descr': '<f4', 'fortran_ordeR': False, 'shape': (10, 4), }", 10, 'latin1');
  assertInputError(() => readNpy(write('keys.npy', keys)), /malformed \.npy header: keys must be/);
  // Fortran order, big-endian, unknown descr, object and structured arrays
  assertInputError(() => readNpy(path.join(dir, 'fortran.npy')), /fortran\.npy: Fortran-ordered arrays are not supported/);
  assertInputError(() => readNpy(path.join(dir, 'big.npy')), /big\.npy: big-endian data \(descr '>f4'\)/);
  assertInputError(() => readNpy(path.join(dir, 'complex.npy')), /complex\.npy: unsupported dtype descr '<c8'/);
  assertInputError(() => readNpy(path.join(dir, 'obj.npy')), /obj\.npy: unsupported dtype descr '\|O'/);
  assertInputError(() => readNpy(path.join(dir, 'rec.npy')), /rec\.npy: malformed \.npy header \(structured dtypes/);
  assertInputError(() => readNpy(path.join(dir, 'missing.npy')), /missing\.npy: cannot read: no such file/);
  // the error carries the file
  try {
    readNpy(trunc);
  } catch (e) {
    assert.equal((e as InputError).file, trunc);
    assert.equal((e as InputError).code, 'ERR_INPUT');
  }
});

test('ids: raw S24 memmap as numpy writes it, lazily decoded', () => {
  const dir = tmpDir();
  const names = ['n04235860_14959.JPEG', 'n01440764_10026.JPEG', 'x'.repeat(24), 'é', 'a'];
  py(
    `p = np.memmap(inp['dir'] + '/paths.mm', dtype='S24', mode='w+', shape=(len(inp['names']),))
p[:] = [s.encode() for s in inp['names']]
p.flush()`,
    { dir, names },
  );
  const file = path.join(dir, 'paths.mm');
  for (const format of ['memmap', 'auto'] as const) {
    const ids = readIds(file, { format, dtype: 'S24' });
    assert.equal(ids.length, names.length);
    assert.equal(ids.source, 'memmap');
    assert.equal(ids.strKind, 'S');
    assert.equal(ids.width, 24);
    assert.equal(ids.raw?.length, 24 * names.length);
    assert.deepEqual(ids.toArray(), names);
    assert.equal(ids.get(3), 'é');
    assert.deepEqual(Array.from(ids.getBytes(3)), [0xc3, 0xa9]);
    assert.throws(() => ids.get(5), RangeError);
  }
  assert.equal(readIds(file, { format: 'memmap', dtype: '|S24', count: 5 }).length, 5);
  assertInputError(
    () => readIds(file, { format: 'memmap', dtype: 'S24', count: 6 }),
    /paths\.mm: ids memmap of dtype S24 and N=6 must be 144 bytes, but the file has 120 bytes/,
  );
  assertInputError(
    () => readIds(file, { format: 'memmap', dtype: 'S7' }),
    /paths\.mm: ids memmap of dtype S7 must be a multiple of 7 bytes, but the file has 120 bytes/,
  );
  assertInputError(() => readIds(file, { format: 'memmap' }), /needs its dtype/);
  assertInputError(() => readIds(file, { format: 'auto' }), /cannot tell the ids format/);
  assertInputError(() => readIds(file, { format: 'memmap', dtype: 'f4' }), /unsupported ids dtype 'f4'/);
  // writeIdsMemmap writes the same bytes numpy does
  const ours = path.join(dir, 'ours.mm');
  writeIdsMemmap(ours, names, 24);
  bytesEqual(ours, file);
  assert.throws(
    () => writeIdsMemmap(path.join(dir, 'long.mm'), ['y'.repeat(25)], 24),
    (e: unknown) => e instanceof OutputError && /25 bytes in UTF-8, longer than S24/.test(e.message),
  );
  assert.ok(!fs.existsSync(path.join(dir, 'long.mm')));
});

test('ids: .npy (S and U) and text files', () => {
  const dir = tmpDir();
  py(
    `np.save(inp + '/s.npy', np.array([b'a.jpg', b'bb.jpg']))
np.save(inp + '/u.npy', np.array(['ü.jpg', 'b']))
np.save(inp + '/f.npy', np.zeros(2))
np.save(inp + '/u2d.npy', np.array([['a', 'b']]))`,
    dir,
  );
  const s = readIds(path.join(dir, 's.npy'), { format: 'auto' });
  assert.deepEqual([s.source, s.strKind, s.width, s.toArray()], ['npy', 'S', 6, ['a.jpg', 'bb.jpg']]);
  const u = readIds(path.join(dir, 'u.npy'), { format: 'npy', count: 2 });
  assert.deepEqual([u.source, u.strKind, u.width, u.toArray()], ['npy', 'U', 5, ['ü.jpg', 'b']]);
  assert.deepEqual(Array.from(u.getBytes(0)), Array.from(Buffer.from('ü.jpg')));
  assertInputError(() => readIds(path.join(dir, 'u.npy'), { format: 'npy', count: 3 }), /expected 3 ids, found 2/);
  assertInputError(() => readIds(path.join(dir, 'f.npy'), { format: 'auto' }), /must hold strings \(dtype S or U\), found float64/);
  assertInputError(() => readIds(path.join(dir, 'u2d.npy'), { format: 'auto' }), /must be 1-D, found shape \(1, 2\)/);

  const t1 = path.join(dir, 'ids.list');
  fs.writeFileSync(t1, 'a\r\nb\nc');
  const ids = readIds(t1, { format: 'auto' });
  assert.deepEqual([ids.source, ids.strKind, ids.toArray()], ['text', 'U', ['a', 'b', 'c']]);
  const t2 = path.join(dir, 'ids.txt');
  fs.writeFileSync(t2, 'only\n');
  assert.deepEqual(readIds(t2, { format: 'auto', count: 1 }).toArray(), ['only']);
  const t3 = path.join(dir, 'empty_line.txt');
  fs.writeFileSync(t3, 'a\n\nb\n');
  assertInputError(() => readIds(t3, { format: 'text' }), /empty_line\.txt: line 2 is empty/);
  const t4 = path.join(dir, 'two_final.txt');
  fs.writeFileSync(t4, 'a\nb\n\n');
  assertInputError(() => readIds(t4, { format: 'text' }), /line 3 is empty/);
  assertInputError(() => readIds(t2, { format: 'text', count: 2 }), /expected 2 ids, found 1 lines/);
  const bad = path.join(dir, 'bad.txt');
  fs.writeFileSync(bad, Buffer.from([0x61, 0xff, 0x0a]));
  assertInputError(() => readIds(bad, { format: 'text' }), /not valid UTF-8/);

  const rows = rowNumberIds(3);
  assert.deepEqual([rows.length, rows.get(2), rows.toArray(), rows.strKind], [3, '2', ['0', '1', '2'], 'U']);
});

test('checkUniqueIds finds the first repeated id as a Map of the strings does, from text bytes, fixed-width bytes and strings', () => {
  // Reference: the first row whose id appeared before, and that id's first row.
  const reference = (list: string[]): [number, number] | undefined => {
    const seen = new Map<string, number>();
    for (let i = 0; i < list.length; i++) {
      const p = seen.get(list[i]!);
      if (p !== undefined) return [p, i];
      seen.set(list[i]!, i);
    }
    return undefined;
  };
  const dir = tmpDir();
  const r = rng(7);
  let repeats = 0;
  for (let trial = 0; trial < 120; trial++) {
    const n = 1 + Math.floor(r() * 300);
    const alphabet = trial % 3 === 0 ? 'ab' : 'abcdéf€';
    const len = 1 + Math.floor(r() * 4);
    const list = Array.from({ length: n }, () => Array.from({ length: 1 + Math.floor(r() * len) }, () => alphabet[Math.floor(r() * alphabet.length)]).join(''));
    const want = reference(list);
    if (want) repeats++;
    const txt = path.join(dir, `ids${trial}.txt`);
    fs.writeFileSync(txt, list.join('\n') + (trial % 2 ? '\n' : ''));
    const crlf = path.join(dir, `crlf${trial}.txt`);
    fs.writeFileSync(crlf, list.join('\r\n') + '\r\n');
    const mm = path.join(dir, `ids${trial}.mm`);
    writeIdsMemmap(mm, list, 16);
    const sources: [string, ReturnType<typeof readIds>][] = [
      [txt, readIds(txt, { format: 'text' })],
      [crlf, readIds(crlf, { format: 'text' })],
      [mm, readIds(mm, { format: 'memmap', dtype: 'S16' })],
      ['strings', idsFromStrings(list)],
    ];
    assert.ok(sources[0]![1].joined && !sources[1]![1].joined && sources[2]![1].raw, 'each path is taken');
    for (const [name, ids] of sources) {
      let got: string | undefined;
      try {
        checkUniqueIds(ids, name);
      } catch (e) {
        assert.ok(e instanceof InputError, String(e));
        got = e.message;
      }
      if (!want) {
        assert.equal(got, undefined, `${name}: no repeat, yet ${got}`);
      } else {
        const text = ids.source === 'text';
        const where = text ? `lines ${want[0] + 1} and ${want[1] + 1}` : `rows ${want[0]} and ${want[1]}`;
        assert.ok(got?.includes(`${JSON.stringify(list[want[1]]!)} appears at ${where}`), `${name}: ${got} (want ${where})`);
      }
    }
  }
  assert.ok(repeats > 20 && repeats < 120, `repeats in ${repeats} of 120 trials`);
});

test('checkUniqueIds names the first duplicate and its two rows', () => {
  const dir = tmpDir();
  const mm = path.join(dir, 'dup.mm');
  writeIdsMemmap(mm, ['a', 'b', 'c', 'b', 'a'], 8);
  const ids = readIds(mm, { format: 'memmap', dtype: 'S8' });
  assertInputError(() => checkUniqueIds(ids, mm), /dup\.mm: ids must be unique, but "b" appears at rows 1 and 3/);
  const txt = path.join(dir, 'dup.txt');
  fs.writeFileSync(txt, 'x\ny\nx\n');
  assertInputError(() => checkUniqueIds(readIds(txt, { format: 'text' }), txt), /"x" appears at lines 1 and 3/);
  checkUniqueIds(idsFromStrings(['a', 'b', 'A']), 'mem');
  checkUniqueIds(rowNumberIds(10), 'rows');
});

test('atomic writes: no temporary file or partial target on failure', () => {
  const dir = tmpDir();
  const listing = () => fs.readdirSync(dir).sort();
  // success
  const target = path.join(dir, 'out.txt');
  atomicWriteFile(target, 'hello\n');
  atomicWriteFile(target, [Buffer.from('new '), Buffer.from('content')]);
  assert.equal(fs.readFileSync(target, 'utf8'), 'new content');
  assert.deepEqual(listing(), ['out.txt']);
  // the parent is a file
  const blocker = path.join(dir, 'blocker');
  fs.writeFileSync(blocker, 'x');
  assert.throws(
    () => writeNpy(path.join(blocker, 'x.npy'), Float32Array.of(1)),
    (e: unknown) => e instanceof OutputError && e.file === path.join(blocker, 'x.npy') && /blocker\/x\.npy: cannot write/.test(e.message),
  );
  assert.deepEqual(listing(), ['blocker', 'out.txt']);
  // a failure in the middle of writing leaves the old target intact and no temporary file
  assert.throws(
    () => atomicWriteFile(target, [Buffer.from('partial'), 42 as unknown as Uint8Array]),
    (e: unknown) => e instanceof OutputError && e.file === target,
  );
  assert.equal(fs.readFileSync(target, 'utf8'), 'new content');
  assert.deepEqual(listing(), ['blocker', 'out.txt']);
  // the target is a directory: the rename fails, the temporary file is removed
  const asDir = path.join(dir, 'isdir.npy');
  fs.mkdirSync(asDir);
  fs.writeFileSync(path.join(asDir, 'keep'), 'k');
  assert.throws(() => writeNpy(asDir, Float32Array.of(1)), (e: unknown) => e instanceof OutputError);
  assert.deepEqual(listing(), ['blocker', 'isdir.npy', 'out.txt']);
  // a read-only folder (not enforced for root)
  const ro = path.join(dir, 'ro');
  fs.mkdirSync(ro);
  fs.chmodSync(ro, 0o555);
  try {
    if (process.getuid?.() !== 0) {
      assert.throws(() => writeNpy(path.join(ro, 'x.npy'), Float32Array.of(1)), (e: unknown) => e instanceof OutputError);
      assert.deepEqual(fs.readdirSync(ro), []);
    }
  } finally {
    fs.chmodSync(ro, 0o755);
  }
  // invalid string items fail before anything is created
  assert.throws(() => writeNpy(path.join(dir, 'w.npy'), ['abc'], { width: 2 }), (e: unknown) => e instanceof OutputError);
  assert.ok(!fs.existsSync(path.join(dir, 'w.npy')));
});

// ---------------------------------------------------------------------------------------------
// Float text forms

function randomFloats(): { f64: Float64Array; f32: Float32Array } {
  let seed = 12345;
  const rnd = () => {
    // xorshift32, deterministic
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  const f64: number[] = [];
  const f32: number[] = [];
  const bits64 = new Float64Array(1);
  const w64 = new Uint32Array(bits64.buffer);
  const bits32 = new Float32Array(1);
  const w32 = new Uint32Array(bits32.buffer);
  for (let i = 0; i < 900; i++) {
    w64[0] = rnd() * 2 ** 32;
    w64[1] = rnd() * 2 ** 32;
    if (Number.isFinite(bits64[0])) f64.push(bits64[0] as number);
    w32[0] = rnd() * 2 ** 32;
    if (Number.isFinite(bits32[0])) f32.push(bits32[0] as number);
  }
  for (let i = 0; i < 400; i++) {
    const e = Math.floor(rnd() * 60) - 30;
    f64.push(Math.floor(rnd() * 10000) * 10 ** e * (rnd() < 0.3 ? -1 : 1));
    f32.push(Math.floor(rnd() * 2 ** 24) * 2 ** (Math.floor(rnd() * 80) - 60));
    f64.push(rnd());
    f32.push(1 - rnd() * 1e-6);
  }
  for (let e = -45; e <= 38; e++) {
    f32.push(10 ** e, -(10 ** e), 1.5 * 10 ** e);
  }
  for (let e = -324; e <= 308; e += 3) f64.push(10 ** e, 2.5 * 10 ** e);
  const edges = [0, -0, 1, -1, 0.1, 1e-4, 9.999e-5, 1e-5, 1e16, 1e15, 9.999999e15, 123456789, 5e-324, 1.7976931348623157e308,
    2 ** 24, 2 ** 24 + 2, 1 - 1e-7, 1e-7, -1.1920929e-7, 1.401298464324817e-45, 3.4028234663852886e38, 0.3, 2 / 3, NaN, Infinity, -Infinity];
  f64.push(...edges);
  f32.push(...edges);
  return { f64: Float64Array.from(f64), f32: Float32Array.from(f32) };
}

test('formatPyFloat equals repr(float) and formatNpFloat32 equals str(np.float32) on ~2000 values each', () => {
  const { f64, f32 } = randomFloats();
  assert.ok(f64.length >= 1900 && f32.length >= 1900, `${f64.length} ${f32.length}`);
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'a.f8'), new Uint8Array(f64.buffer));
  fs.writeFileSync(path.join(dir, 'a.f4'), new Uint8Array(f32.buffer));
  const out = py(
    `a = np.fromfile(inp + '/a.f8', dtype='<f8'); b = np.fromfile(inp + '/a.f4', dtype='<f4')
print(json.dumps([[repr(float(x)) for x in a], [str(x) for x in b]]))`,
    dir,
  );
  const [r64, r32] = JSON.parse(out) as [string[], string[]];
  const bad: string[] = [];
  f64.forEach((x, i) => {
    if (formatPyFloat(x) !== r64[i]) bad.push(`f64 ${x}: ours ${formatPyFloat(x)} python ${r64[i]}`);
  });
  f32.forEach((x, i) => {
    if (formatNpFloat32(x) !== r32[i]) bad.push(`f32 ${x}: ours ${formatNpFloat32(x)} numpy ${r32[i]}`);
  });
  assert.deepEqual(bad.slice(0, 20), []);
  // a few spelled out
  assert.equal(formatPyFloat(1e-7), '1e-07');
  assert.equal(formatPyFloat(1.5e16), '1.5e+16');
  assert.equal(formatPyFloat(-2.5e-5), '-2.5e-05');
  assert.equal(formatPyFloat(1), '1.0');
  assert.equal(formatPyFloat(-0), '-0.0');
  assert.equal(formatNpFloat32(1 - 1e-7), '0.9999999');
  assert.equal(formatNpFloat32(1e-4), '1e-04');
  assert.equal(formatNpFloat32(0.1), '0.1');
  assert.equal(formatNpFloat32(123456789), '123456790.0');
});

// ---------------------------------------------------------------------------------------------
// Sorted-cluster tuple arrays

test('sorted-cluster arrays are byte-identical to np.save(list of tuples)', () => {
  const dir = tmpDir();
  const f32Dists = [0.1, 1e-7, 1 - 1e-7, -1.1920929e-7, 0, 2, 1e-4, 123.456];
  interface Case {
    name: string;
    ids: string[];
    idKind: 'S' | 'U';
    distType: 'float32' | 'float64';
    dists: number[];
    cluster: number;
    /** ids come from an S memmap of this width */
    memmapWidth?: number;
  }
  const mk = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => f(i));
  const cases: Case[] = [
    { name: 's24_f32', ids: mk(8, (i) => `n0423586${i}_14959.JPEG`), idKind: 'S', distType: 'float32', dists: f32Dists, cluster: 0, memmapWidth: 24 },
    { name: 's24_short', ids: mk(8, (i) => `${i}`), idKind: 'S', distType: 'float32', dists: f32Dists, cluster: 17, memmapWidth: 24 },
    { name: 's40_f32', ids: mk(3, (i) => `${i}`.padStart(40, 'p')), idKind: 'S', distType: 'float32', dists: [0.5, -0.25, 1e-7], cluster: 3, memmapWidth: 48 },
    { name: 'bytes33', ids: ['q'.repeat(33), 'r'], idKind: 'S', distType: 'float64', dists: [0.1, -1e-7], cluster: 2 },
    { name: 'str_f64', ids: ['a', 'bb', 'ccc'], idKind: 'U', distType: 'float64', dists: [0.1, 1e-7, -1.1920929e-7], cluster: 5 },
    { name: 'str64_f32', ids: mk(2, (i) => `${i}`.repeat(64)), idKind: 'U', distType: 'float32', dists: [1 - 1e-7, 0], cluster: 1 },
    { name: 'str_unicode', ids: ['日本語.jpg', 'é'.repeat(40)], idKind: 'U', distType: 'float32', dists: [0.3, 0.7], cluster: 9 },
    { name: 'str_neg', ids: ['x'], idKind: 'U', distType: 'float64', dists: [-2.5e-5], cluster: -1 },
  ];
  const rowsOf = (c: Case) => c.ids.map((_, i) => i * 7 + 3);
  const out = py(
    `import os
res = {}
for c in inp['cases']:
    n = len(c['ids'])
    if 'memmapWidth' in c:
        w = c['memmapWidth']
        p = np.memmap(os.path.join(inp['dir'], c['name'] + '.mm'), dtype='S%d' % w, mode='w+', shape=(n,))
        p[:] = [s.encode() for s in c['ids']]
        ids = [p[i] for i in range(n)]
    elif c['idKind'] == 'S':
        ids = [s.encode() for s in c['ids']]
    else:
        ids = list(c['ids'])
    if c['distType'] == 'float32':
        dists = list(np.array(c['dists'], dtype=np.float32))
    else:
        dists = [float(d) for d in c['dists']]
    rows = c['rows']
    labels = np.full((n,), c['cluster']).tolist()
    tuples = list(zip(ids, rows, dists, labels))
    a = np.array(tuples)
    np.save(os.path.join(inp['dir'], 'ref_' + c['name'] + '.npy'), a)
    res[c['name']] = a.dtype.str
print(json.dumps(res))`,
    { dir, cases: cases.map((c) => ({ ...c, rows: rowsOf(c) })) },
  );
  const dtypes = JSON.parse(out) as Record<string, string>;
  const observed: Record<string, string> = { ...dtypes };
  // the rule, as observed
  assert.deepEqual(dtypes, {
    s24_f32: '|S32',
    s24_short: '|S32',
    s40_f32: '|S40',
    bytes33: '|S33',
    str_f64: '<U32',
    str64_f32: '<U64',
    str_unicode: '<U40',
    str_neg: '<U32',
  });
  for (const c of cases) {
    let ids: (string | Uint8Array)[] = c.ids;
    if (c.memmapWidth !== undefined) {
      const mm = readIds(path.join(dir, `${c.name}.mm`), { format: 'memmap', dtype: `S${c.memmapWidth}` });
      ids = Array.from({ length: mm.length }, (_, i) => mm.getBytes(i));
    }
    const arr = sortedClusterArray(ids, rowsOf(c), c.distType === 'float32' ? Float32Array.from(c.dists) : c.dists, c.cluster, {
      idKind: c.idKind,
      distType: c.distType,
    });
    assert.equal(`${arr.kind === "S" ? "|S" : "<U"}${arr.width}`, observed[c.name], c.name);
    const ours = path.join(dir, `ours_${c.name}.npy`);
    writeSortedCluster(ours, arr);
    bytesEqual(ours, path.join(dir, `ref_${c.name}.npy`));
  }
  const s = sortedClusterArray([Buffer.from('id0')], [4], Float32Array.of(1e-7), 2);
  assert.deepEqual(s, { kind: 'S', width: 32, cells: ['id0', '4', '1e-07', '2'], shape: [1, 4] });
});
