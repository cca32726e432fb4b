// Python's and numpy's text forms of floats, and the string arrays numpy builds from the
// original's sorted-cluster tuples.
//
// - formatPyFloat(x): repr(float(x)) in Python 3: the shortest digits that round-trip through
//   float64; positional when the decimal exponent e (x = d.ddd × 10^e) is in [-4, 16), else
//   scientific with at least two exponent digits ('1e-07', '1.5e+16'); '1.0', '-0.0', 'inf',
//   '-inf', 'nan'.
// - formatNpFloat32(x): str(np.float32(x)) in numpy >= 1.14: the shortest digits that round-trip
//   through float32 (the closest such decimal to the value); positional when the VALUE is 0 or
//   1e-4 <= |x| < 1e16, else scientific. The switch is decided on the float32 value itself, not
//   on the printed digits: np.float32(1e-4) is 9.99999974e-05, so it prints as '1e-04' while
//   Python's repr(1e-4) is '0.0001'.

import { writeNpy } from './npy.js';

/** Shortest decimal digits of a positive finite value: value ≈ 0.d1d2… × 10^(exp+1). */
interface Digits {
  /** Significant digits, no leading or trailing zeros. */
  digits: string;
  /** Decimal exponent of the first digit: value = d1.d2d3… × 10^exp. */
  exp: number;
}

function shortestDigitsF64(x: number): Digits {
  // ECMAScript's Number-to-string conversion gives the shortest digits that round-trip, and of
  // those the closest to the value: the same digits as Python's repr.
  const s = x.toExponential();
  const m = /^(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) throw new Error(`unexpected number format ${s}`);
  const digits = ((m[1] as string) + (m[2] ?? '')).replace(/0+$/, '') || '0';
  return { digits, exp: Number(m[3]) };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function pow10(k: number): bigint {
  return 10n ** BigInt(k);
}

/**
 * Shortest digits that round-trip through float32 (round-to-nearest-even parsing), choosing the
 * closest to the value when several have the same length. Exact integer arithmetic.
 */
function shortestDigitsF32(x: number): Digits {
  f32[0] = x;
  const bits = u32[0] as number;
  const biased = (bits >>> 23) & 0xff;
  const frac = bits & 0x7fffff;
  let m: number;
  let e: number;
  if (biased === 0) {
    m = frac;
    e = -149;
  } else {
    m = frac | 0x800000;
    e = biased - 150;
  }
  // value = m·2^e. In units of 2^(e-2): value = 4m, upper bound 4m + 2, lower bound 4m - 2,
  // or 4m - 1 when m is a power of two above the smallest normal (the gap below is half).
  const q = e - 2;
  const V = BigInt(4 * m);
  const hi = V + 2n;
  const lo = biased > 1 && frac === 0 ? V - 1n : V - 2n;
  const even = (m & 1) === 0;
  // Compare n·10^k with Y·2^q as integers: scale both by 2^max(-q,0)·10^max(-k,0).
  const twoPos = q > 0 ? 1n << BigInt(q) : 1n;
  const twoNeg = q < 0 ? 1n << BigInt(-q) : 1n;
  // Decimal exponent of the value: 10^E <= x < 10^(E+1).
  let E = Math.floor(Math.log10(x));
  const geq = (k: number): boolean => {
    // x >= 10^k ?
    const lhs = V * twoPos * (k < 0 ? pow10(-k) : 1n);
    const rhs = (k > 0 ? pow10(k) : 1n) * twoNeg;
    return lhs >= rhs;
  };
  while (!geq(E)) E--;
  while (geq(E + 1)) E++;
  for (let p = 1; p <= 17; p++) {
    const k = E - p + 1;
    // scaled: Y·2^q / 10^k = Y·twoPos·10^(-k) / (twoNeg·10^k)  (with the signs split)
    const num = (Y: bigint) => Y * twoPos * (k < 0 ? pow10(-k) : 1n);
    const den = (k > 0 ? pow10(k) : 1n) * twoNeg;
    const vN = num(V);
    const n0 = vN / den; // floor(value / 10^k)
    const loN = num(lo);
    const hiN = num(hi);
    const inside = (n: bigint): boolean => {
      const d = n * den;
      if (even) return d >= loN && d <= hiN;
      return d > loN && d < hiN;
    };
    const cands: bigint[] = [];
    if (n0 > 0n && inside(n0)) cands.push(n0);
    if (inside(n0 + 1n)) cands.push(n0 + 1n);
    if (cands.length === 0) continue;
    let best = cands[0] as bigint;
    if (cands.length === 2) {
      const dLow = vN - n0 * den;
      const dHigh = (n0 + 1n) * den - vN;
      // closest; on a tie the even last digit
      best = dLow < dHigh ? n0 : dHigh < dLow ? n0 + 1n : n0 % 2n === 0n ? n0 : n0 + 1n;
    }
    let s = best.toString();
    let exp = E;
    if (s.length > p) exp += s.length - p; // 99.. rounded up to 10..
    s = s.replace(/0+$/, '');
    return { digits: s || '0', exp };
  }
  // Unreachable: 9 significant digits always round-trip through float32.
  throw new Error(`no round-trip digits for ${x}`);
}

function positional(d: Digits): string {
  const { digits, exp } = d;
  if (exp >= 0) {
    if (digits.length <= exp + 1) return digits + '0'.repeat(exp + 1 - digits.length) + '.0';
    return `${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  return `0.${'0'.repeat(-exp - 1)}${digits}`;
}

function scientific(d: Digits): string {
  const { digits, exp } = d;
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  const a = Math.abs(exp);
  return `${mant}e${exp < 0 ? '-' : '+'}${a < 10 ? '0' : ''}${a}`;
}

function special(x: number): string | null {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  return null;
}

/** Python's repr() of a float64. */
export function formatPyFloat(x: number): string {
  const sp = special(x);
  if (sp !== null) return sp;
  const d = shortestDigitsF64(Math.abs(x));
  const body = d.exp >= -4 && d.exp < 16 ? positional(d) : scientific(d);
  return x < 0 ? `-${body}` : body;
}

/** numpy's str() of np.float32(x) (x is rounded to float32 first). */
export function formatNpFloat32(x: number): string {
  const v = Math.fround(x);
  const sp = special(v);
  if (sp !== null) return sp;
  const a = Math.abs(v);
  const d = shortestDigitsF32(a);
  const body = a >= 1e-4 && a < 1e16 ? positional(d) : scientific(d);
  return v < 0 ? `-${body}` : body;
}

// ---------------------------------------------------------------------------------------------
// Sorted-cluster arrays.
//
// The original saves each cluster as np.save(path, list_of_tuples) with tuples
// (path, row_index, distance, cluster): np.array turns the list into a 2-D string array of shape
// (n, 4). Rule (measured with numpy 1.24.2; numpy 2.x discovers the same dtypes):
//   - Kind: the ids decide. bytes ids (np.bytes_ from an S memmap, or Python bytes) with numbers
//     give bytes 'S'; str ids give unicode 'U'. Numbers become their text in that kind.
//   - Width: every element is discovered as its own dtype and the string dtypes are promoted
//     to the longest: a bytes/str id has its own length (bytes for S, characters for U; the
//     trailing NULs of memmap items are already stripped), an int (Python int or np.int64)
//     promotes to width 21, a float (np.float32 or Python float) to width 32. So
//     width = max(32, longest id). Not the longest printed number: '0.1' still gives S32/U32.
//     Examples: S24 ids -> '|S32'; 40-byte bytes ids -> '|S40'; 64-char str ids -> '<U64'.
//   - Cells: the id as is; row and cluster as decimal integers ('-5' for negatives); the
//     distance as str(np.float32(d)) when the distances are float32 (the original's
//     `1 - dist_to_cent` on a float32 column), or repr(d) for Python floats: 1e-07 -> '1e-07',
//     1 - 1e-7 in float32 -> '0.9999999', 0.1 -> '0.1', 0 -> '0.0', -1.1920929e-07 ->
//     '-1.1920929e-07'.

export interface SortedClusterArray {
  kind: 'S' | 'U';
  /** Item width: bytes for S, characters for U. */
  width: number;
  /** n × 4 cells, row-major: id, row, distance, cluster. */
  cells: string[];
  shape: [number, 4];
}

export interface SortedClusterOptions {
  /** 'S' when the ids are bytes (an S memmap or S .npy), 'U' when str. Default: 'S' for Uint8Array ids, else 'U'. */
  idKind?: 'S' | 'U';
  /** Whether the distances are np.float32 values (default) or Python floats (float64). */
  distType?: 'float32' | 'float64';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function itemLength(s: string, kind: 'S' | 'U'): number {
  if (kind === 'S') return Buffer.byteLength(s, 'utf8');
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/**
 * The string array np.array(list(zip(ids, rows, dists, [cluster]*n))) produces, as used by
 * the original's sorted_clusters/cluster_{c}.npy.
 */
export function sortedClusterArray(
  ids: ArrayLike<string | Uint8Array>,
  rows: ArrayLike<number>,
  dists: ArrayLike<number>,
  cluster: number,
  opts: SortedClusterOptions = {},
): SortedClusterArray {
  const n = ids.length;
  if (rows.length !== n || dists.length !== n) {
    throw new Error(`sortedClusterArray: ${n} ids, ${rows.length} rows and ${dists.length} distances`);
  }
  const kind: 'S' | 'U' = opts.idKind ?? (n > 0 && ids[0] instanceof Uint8Array ? 'S' : 'U');
  const fmt = (opts.distType ?? 'float32') === 'float32' ? formatNpFloat32 : formatPyFloat;
  const clusterText = String(cluster);
  const cells: string[] = new Array(n * 4);
  let width = 32;
  for (let i = 0; i < n; i++) {
    const raw = ids[i] as string | Uint8Array;
    let id: string;
    let len: number;
    if (typeof raw === 'string') {
      id = raw;
      len = itemLength(id, kind);
    } else {
      let end = raw.length;
      while (end > 0 && raw[end - 1] === 0) end--;
      id = utf8.decode(raw.subarray(0, end));
      len = kind === 'S' ? end : itemLength(id, 'U');
    }
    if (len > width) width = len;
    cells[4 * i] = id;
    cells[4 * i + 1] = String(rows[i]);
    cells[4 * i + 2] = fmt(dists[i] as number);
    cells[4 * i + 3] = clusterText;
  }
  return { kind, width, cells, shape: [n, 4] };
}

/** Write a sorted-cluster array as np.save would (atomically). */
export function writeSortedCluster(file: string, arr: SortedClusterArray): void {
  writeNpy(file, arr.cells, { shape: arr.shape, strKind: arr.kind, width: arr.width });
}
