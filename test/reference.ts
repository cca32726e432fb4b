// Independent float64 reference of SemDeDup steps 2 (assignment given centroids), 3, 4 and 5,
// written straight from SPEC.md. Deliberately naive: clarity over speed (O(n²·D) per cluster).
// Every product is of the float32 inputs, accumulated in float64 in dimension order.

export type Metric = 'cosine' | 'l2';
export type WhichToKeep = 'hard' | 'easy' | 'random';

function dot64(a: ArrayLike<number>, aOff: number, b: ArrayLike<number>, bOff: number, d: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += a[aOff + t] * b[bOff + t];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Step 2: assignment given centroids.

/**
 * Nearest centroid of every row. Inner product: argmax x·c, dist = x·c. L2: argmin ||x − c||²,
 * dist = that squared distance. Ties go to the lowest centroid index.
 */
export function refAssign(
  X: Float32Array,
  n: number,
  d: number,
  centroids: Float32Array,
  k: number,
  innerProduct: boolean,
): { nearest: Int32Array; dist: Float64Array } {
  if (X.length < n * d) throw new RangeError(`refAssign: X has ${X.length} values, need ${n * d}`);
  if (centroids.length < k * d) throw new RangeError(`refAssign: centroids have ${centroids.length} values, need ${k * d}`);
  const nearest = new Int32Array(n);
  const dist = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let best = -1;
    let bestVal = 0;
    for (let c = 0; c < k; c++) {
      let v: number;
      if (innerProduct) {
        v = dot64(X, i * d, centroids, c * d, d);
      } else {
        v = 0;
        for (let t = 0; t < d; t++) {
          const diff = X[i * d + t] - centroids[c * d + t];
          v += diff * diff;
        }
      }
      const better = best < 0 || (innerProduct ? v > bestVal : v < bestVal);
      if (better) {
        best = c;
        bestVal = v;
      }
    }
    nearest[i] = best;
    dist[i] = bestVal;
  }
  return { nearest, dist };
}

/**
 * The float64 inner product of the engine's numerical contract (docs/algorithm.md, "Exact nearest
 * centroid"), written from its definition: the exact products x_j·c_j summed in 8 lanes (lane
 * j mod 8, ascending j), the lanes added as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)).
 */
export function dot64Lanes(a: ArrayLike<number>, aOff: number, b: ArrayLike<number>, bOff: number, d: number): number {
  const l = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let t = 0; t < d; t++) l[t % 8]! += a[aOff + t]! * b[bOff + t]!;
  return ((l[0]! + l[1]!) + (l[2]! + l[3]!)) + ((l[4]! + l[5]!) + (l[6]! + l[7]!));
}

/**
 * The exact nearest centroid by that definition: the largest inner product (innerProduct), or the
 * smallest (x·x + c·c) − 2 x·c; ties to the lowest centroid id. dist: the float32 rounding of the
 * inner product, or of the squared distance clamped at 0.
 */
export function refAssignExact(
  X: Float32Array,
  n: number,
  d: number,
  centroids: Float32Array,
  k: number,
  innerProduct: boolean,
): { nearest: Int32Array; dist: Float32Array } {
  const nearest = new Int32Array(n);
  const dist = new Float32Array(n);
  const cc = Float64Array.from({ length: k }, (_, c) => dot64Lanes(centroids, c * d, centroids, c * d, d));
  for (let i = 0; i < n; i++) {
    const xx = innerProduct ? 0 : dot64Lanes(X, i * d, X, i * d, d);
    let best = -1;
    let bestScore = 0;
    for (let c = 0; c < k; c++) {
      const xc = dot64Lanes(X, i * d, centroids, c * d, d);
      const score = innerProduct ? xc : -((xx + cc[c]!) - 2 * xc);
      if (best < 0 || score > bestScore) {
        best = c;
        bestScore = score;
      }
    }
    nearest[i] = best;
    dist[i] = innerProduct ? bestScore : Math.max(0, -bestScore);
  }
  return { nearest, dist };
}

// ---------------------------------------------------------------------------------------------
// Step 3: distance to the centroid and ranking.

export interface RefKeyInput {
  metric: Metric;
  /** Whether k-means was spherical (assignment by inner product). */
  spherical: boolean;
  /** dist_to_cent of step 2 (inner product when spherical, squared L2 otherwise). */
  dist: ArrayLike<number>;
  /** Needed only for cosine without spherical k-means. */
  X?: Float32Array;
  d?: number;
  nearest?: ArrayLike<number>;
  centroids?: Float32Array;
}

/**
 * The step-3 distance per row: cosine + spherical: 1 − dist; cosine, not spherical:
 * 1 − cos(x, centroid) in float64; l2: dist. l2 with spherical k-means is an error.
 */
export function refKey(input: RefKeyInput): Float64Array {
  const { metric, spherical, dist } = input;
  const n = dist.length;
  const key = new Float64Array(n);
  if (metric === 'l2') {
    if (spherical) throw new Error('refKey: sim_metric l2 with spherical k-means is an error');
    for (let i = 0; i < n; i++) key[i] = dist[i];
    return key;
  }
  if (metric !== 'cosine') throw new Error(`refKey: unknown metric ${String(metric)}`);
  if (spherical) {
    for (let i = 0; i < n; i++) key[i] = 1 - dist[i];
    return key;
  }
  const { X, d, nearest, centroids } = input;
  if (X === undefined || d === undefined || nearest === undefined || centroids === undefined) {
    throw new Error('refKey: cosine without spherical k-means needs X, d, nearest and centroids');
  }
  for (let i = 0; i < n; i++) {
    const c = nearest[i];
    const xc = dot64(X, i * d, centroids, c * d, d);
    const xx = dot64(X, i * d, X, i * d, d);
    const cc = dot64(centroids, c * d, centroids, c * d, d);
    key[i] = 1 - xc / (Math.sqrt(xx) * Math.sqrt(cc));
  }
  return key;
}

/**
 * Rows of every cluster 0 … k−1, sorted by key descending (keepHard) or ascending; the sort is
 * stable, so equal keys keep ascending row order. Empty clusters give [].
 */
export function refRank(nearest: ArrayLike<number>, key: ArrayLike<number>, k: number, keepHard: boolean): number[][] {
  const clusters: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < nearest.length; i++) {
    const c = nearest[i];
    if (!(c >= 0 && c < k)) throw new RangeError(`refRank: row ${i} has cluster ${c}, outside [0, ${k})`);
    clusters[c].push(i);
  }
  for (const rows of clusters) {
    rows.sort((a, b) => {
      const ka = key[a];
      const kb = key[b];
      if (ka !== kb) return keepHard ? (ka > kb ? -1 : 1) : ka < kb ? -1 : 1;
      return a - b;
    });
  }
  return clusters;
}

// ---------------------------------------------------------------------------------------------
// Step 4: semantic deduplication within a cluster.

/**
 * The member order used for deduplication: 'hard' keeps the step-3 order, 'easy' reverses it,
 * 'random' applies `permutation` (positions into `clusterRows`: result[t] =
 * clusterRows[permutation[t]]), which must be a permutation of 0 … n−1.
 */
export function refKeepOrder(clusterRows: readonly number[], which: WhichToKeep, permutation?: ArrayLike<number>): number[] {
  const n = clusterRows.length;
  if (which === 'hard') return clusterRows.slice();
  if (which === 'easy') return clusterRows.slice().reverse();
  if (which !== 'random') throw new Error(`refKeepOrder: unknown which_to_keep ${String(which)}`);
  if (permutation === undefined) throw new Error("refKeepOrder: 'random' needs the permutation the engine used");
  if (permutation.length !== n) throw new Error(`refKeepOrder: permutation has ${permutation.length} entries, cluster has ${n}`);
  const seen = new Uint8Array(n);
  const out: number[] = new Array(n);
  for (let t = 0; t < n; t++) {
    const p = permutation[t];
    if (!(Number.isInteger(p) && p >= 0 && p < n) || seen[p]) {
      throw new Error(`refKeepOrder: entry ${t} (${p}) makes the permutation invalid`);
    }
    seen[p] = 1;
    out[t] = clusterRows[p];
  }
  return out;
}

/**
 * M[j] = max(0, max_{i<j} x_i · x_j), M[0] = 0, over the members `rows` in the given order.
 * arg[j] is the position (in `rows`) of the earliest earlier member reaching the maximum, or −1
 * when M[j] comes from the clamp (j = 0, or every earlier similarity is negative). When the
 * maximum similarity is exactly 0, arg points at the earliest member with similarity 0.
 */
export function refMaxSim(X: Float32Array, d: number, rows: readonly number[]): { M: Float64Array; arg: Int32Array } {
  const n = rows.length;
  const M = new Float64Array(n);
  const arg = new Int32Array(n).fill(-1);
  for (let j = 1; j < n; j++) {
    let best = -Infinity;
    let bestI = -1;
    for (let i = 0; i < j; i++) {
      const s = dot64(X, rows[i] * d, X, rows[j] * d, d);
      if (s > best) {
        best = s;
        bestI = i;
      }
    }
    if (best >= 0) {
      M[j] = best;
      arg[j] = bestI;
    } else {
      M[j] = 0;
      arg[j] = -1;
    }
  }
  return { M, arg };
}

/**
 * Step 4 by the engine's exact definition (docs/algorithm.md, "Exact M"): each similarity is the
 * fixed-order float64 value dot64Lanes; M[j] = max(0, max_{i<j}), arg[j] = the earliest position
 * reaching that maximum, or -1 when M[j] = 0. Also the runner-up (the largest value at another
 * position, -Infinity when none) for counting ties.
 */
export function refMaxSimExact(X: Float32Array, d: number, rows: readonly number[]): { M: Float64Array; arg: Int32Array; second: Float64Array } {
  const n = rows.length;
  const M = new Float64Array(n);
  const arg = new Int32Array(n).fill(-1);
  const second = new Float64Array(n).fill(-Infinity);
  for (let j = 1; j < n; j++) {
    let best = -Infinity;
    let bestI = -1;
    let sec = -Infinity;
    for (let i = 0; i < j; i++) {
      const s = dot64Lanes(X, rows[i]! * d, X, rows[j]! * d, d);
      if (s > best) {
        sec = best;
        best = s;
        bestI = i;
      } else if (s > sec) sec = s;
    }
    if (best > 0) {
      M[j] = best;
      arg[j] = bestI;
    }
    second[j] = sec;
  }
  return { M, arg, second };
}

/** Removal flags for one eps: member j is removed when M[j] > 1 − eps; a lone member is kept. */
export function refDecisions(M: ArrayLike<number>, eps: number): boolean[] {
  const n = M.length;
  if (n === 1) return [false];
  const thr = 1 - eps;
  const out: boolean[] = new Array(n);
  for (let j = 0; j < n; j++) out[j] = M[j] > thr;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Step 5: extraction.

/**
 * Walks clusters 0 … k−1 and, within each, the members in the order given (aligned with
 * `removedPerCluster`), collecting the ids of kept and of removed members.
 */
export function refExtract(
  clusters: readonly (readonly number[])[],
  removedPerCluster: readonly (ArrayLike<boolean>)[],
  ids: readonly string[],
): { kept: string[]; removed: string[] } {
  if (clusters.length !== removedPerCluster.length) {
    throw new Error(`refExtract: ${clusters.length} clusters but ${removedPerCluster.length} removal lists`);
  }
  const kept: string[] = [];
  const removed: string[] = [];
  for (let c = 0; c < clusters.length; c++) {
    const rows = clusters[c];
    const rem = removedPerCluster[c];
    if (rem.length !== rows.length) throw new Error(`refExtract: cluster ${c} has ${rows.length} members, ${rem.length} flags`);
    for (let t = 0; t < rows.length; t++) (rem[t] ? removed : kept).push(ids[rows[t]]);
  }
  return { kept, removed };
}

// ---------------------------------------------------------------------------------------------
// Comparison helpers for assertion messages.

export interface MMismatch {
  index: number;
  ours: number;
  ref: number;
  diff: number;
  message: string;
}

/** First j with |ours[j] − ref[j]| > tol (or NaN, or a length mismatch, index −1); null if none. */
export function compareM(ours: ArrayLike<number>, ref: ArrayLike<number>, tol = 1e-5): MMismatch | null {
  if (ours.length !== ref.length) {
    return { index: -1, ours: ours.length, ref: ref.length, diff: NaN, message: `M length ${ours.length} != reference length ${ref.length}` };
  }
  for (let j = 0; j < ref.length; j++) {
    const diff = Math.abs(ours[j] - ref[j]);
    if (!(diff <= tol)) {
      const lo = Math.max(0, j - 2);
      const hi = Math.min(ref.length, j + 3);
      const ctx: string[] = [];
      for (let t = lo; t < hi; t++) ctx.push(`[${t}] ours=${ours[t]} ref=${ref[t]}`);
      return {
        index: j,
        ours: ours[j],
        ref: ref[j],
        diff,
        message: `M[${j}] = ${ours[j]}, reference ${ref[j]} (|diff| ${diff} > ${tol}); around: ${ctx.join(', ')}`,
      };
    }
  }
  return null;
}

export interface DecisionMismatch {
  index: number;
  ours: boolean;
  expected: boolean;
  refM: number;
  threshold: number;
  message: string;
}

/**
 * First member whose removal flag differs from the float64 decision, considering only members
 * whose reference M is further than `tol` from 1 − eps (the numerical contract of docs/algorithm.md); null if none.
 * A length mismatch is reported at index −1.
 */
export function compareDecisions(
  oursRemoved: ArrayLike<boolean | number>,
  refM: ArrayLike<number>,
  eps: number,
  tol = 1e-5,
): DecisionMismatch | null {
  const thr = 1 - eps;
  if (oursRemoved.length !== refM.length) {
    return {
      index: -1,
      ours: false,
      expected: false,
      refM: NaN,
      threshold: thr,
      message: `${oursRemoved.length} decisions but reference M has ${refM.length} members`,
    };
  }
  const expected = refDecisions(refM, eps);
  for (let j = 0; j < refM.length; j++) {
    if (refM.length > 1 && !(Math.abs(refM[j] - thr) > tol)) continue;
    const ours = Boolean(oursRemoved[j]);
    if (ours !== expected[j]) {
      return {
        index: j,
        ours,
        expected: expected[j],
        refM: refM[j],
        threshold: thr,
        message: `member ${j}: removed=${ours}, reference removed=${expected[j]} (ref M ${refM[j]}, 1 − eps ${thr}, eps ${eps})`,
      };
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Half floats, independently of src/io/half.ts.

/** numpy's float16 rounding (round to nearest even) of a float32 value, as bits. */
export function referenceToHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

export function referenceFromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
