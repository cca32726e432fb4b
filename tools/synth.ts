// Deterministic synthetic embedding datasets with planted near-duplicates.
//
// The generator is streaming: `synthPlan` decides cheaply (O(n) memory, no embeddings) which
// rows are duplicates of which and which cluster every row belongs to; `fillRows` then writes
// any range of L2-normalised float32 rows into a caller-provided buffer. Row i depends only on
// (seed, i) and, for a duplicate, on its original's row, so ranges can be generated
// independently, in any order and in any chunking, always giving the same bytes.
//
// Everything is integer arithmetic plus correctly rounded IEEE operations (+, −, ×, ÷, sqrt):
// no Math.exp/log/sin/cos on the generation path, so the output is identical on every machine
// and Node version.

import { ConfigError } from '../src/errors.js';

export type SizeDistribution = 'uniform' | 'heavy';

export interface SynthOptions {
  /** Number of rows. */
  n: number;
  /** Embedding dimension. */
  dim: number;
  /** Number of planted clusters (random unit centres). */
  clusters: number;
  /** Seed (any integer; only its low 32 bits are used). */
  seed: number;
  /** Fraction of rows that are planted duplicates of another ("original") row, in [0, 1). */
  dupFraction: number;
  /** Among the duplicates, the share that are exact (bitwise equal) copies, in [0, 1]. */
  exactFraction: number;
  /** Cosine range [lo, hi] of near duplicates to their original, drawn uniformly. */
  nearCos: [number, number];
  /**
   * Cluster tightness: each row is normalize(centre + noise) with noise std `spread / sqrt(dim)`
   * per dimension, so the typical cosine of two rows of one cluster is about 1 / (1 + spread²)
   * and the cosine of a row to its centre about 1 / sqrt(1 + spread²).
   */
  spread: number;
  /** 'uniform': equal cluster sizes; 'heavy': Zipf-like sizes, the largest cluster ≥ 10% of n. */
  sizeDistribution: SizeDistribution;
}

export const DEFAULT_SYNTH_OPTIONS: Readonly<SynthOptions> = Object.freeze({
  n: 10_000,
  dim: 64,
  clusters: 20,
  seed: 1,
  dupFraction: 0.2,
  exactFraction: 0.25,
  nearCos: [0.995, 0.9995] as [number, number],
  // In-cluster cosine ≈ 1 / (1 + 0.75²) = 0.64, cosine to the centre ≈ 0.8.
  spread: 0.75,
  sizeDistribution: 'uniform' as SizeDistribution,
});

/** Target share of the largest cluster for 'heavy' (kept above 10% with some margin). */
const HEAVY_LARGEST_SHARE = 0.12;

export interface SynthPlan {
  readonly opts: Readonly<SynthOptions>;
  /** -1 for an original row, else the row index of its original (earlier or later). */
  readonly dupOf: Int32Array;
  /** Planted cosine of each duplicate to its original: 1 for exact copies, NaN for originals. */
  readonly cos: Float64Array;
  /** 1 when the row is an exact copy of its original, else 0. */
  readonly exact: Uint8Array;
  /** Planted cluster of every row (a duplicate is in its original's cluster). */
  readonly label: Int32Array;
  /** Number of rows per planted cluster. */
  readonly clusterSizes: Int32Array;
  /** Unit cluster centres, clusters × dim, float32. */
  readonly centres: Float32Array;
  /** Number of duplicate rows (exact + near). */
  readonly nDup: number;
  /** Number of exact copies among the duplicates. */
  readonly nExact: number;
}

export interface DuplicateCopy {
  row: number;
  /** The planted cosine to the original (1 for an exact copy). */
  cos: number;
  exact: boolean;
}

export interface DuplicateGroup {
  /** The original row. */
  original: number;
  /** Its planted copies, in ascending row order. */
  copies: DuplicateCopy[];
}

// ---------------------------------------------------------------------------------------------
// PRNG: splitmix32-style hashing for seeding, xoshiro128** for streams.

/** A 32-bit finaliser (murmur3 fmix32 constants variant); bijective on uint32. */
function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** Stream tags so that the plan, centres and rows use unrelated streams. */
const TAG_PLAN = 0x504c414e; // 'PLAN'
const TAG_CENTRE = 0x43454e54; // 'CENT'
const TAG_ROW = 0x524f5753; // 'ROWS'

/**
 * Seeds a xoshiro128** state from (seed, tag, index). Rows up to 2^53 are supported: the index
 * is split into its low and high 32-bit words.
 */
function seedState(state: Uint32Array, seed: number, tag: number, index: number): void {
  const lo = index >>> 0;
  const hi = Math.floor(index / 4294967296) >>> 0;
  let h = mix32((seed >>> 0) ^ 0x9e3779b9);
  h = mix32((h ^ tag) >>> 0);
  h = mix32((h + hi) >>> 0);
  h = mix32((h ^ lo) >>> 0);
  // splitmix32 sequence from h to fill the four words.
  let s = h;
  for (let w = 0; w < 4; w++) {
    s = (s + 0x9e3779b9) >>> 0;
    state[w] = mix32(s);
  }
  if ((state[0] | state[1] | state[2] | state[3]) === 0) state[0] = 1;
}

/** One xoshiro128** step on `state`; returns a uint32. */
function nextU32(state: Uint32Array): number {
  const s0 = state[0];
  const s1 = state[1];
  const s2 = state[2];
  const s3 = state[3];
  const m = Math.imul(s1, 5);
  const r = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
  const t = s1 << 9;
  let n2 = s2 ^ s0;
  let n3 = s3 ^ s1;
  const n1 = s1 ^ n2;
  const n0 = s0 ^ n3;
  n2 ^= t;
  n3 = (n3 << 11) | (n3 >>> 21);
  state[0] = n0;
  state[1] = n1;
  state[2] = n2;
  state[3] = n3;
  return r;
}

/** Uniform double in [0, 1) with 53 random bits. */
function nextDouble(state: Uint32Array): number {
  const a = nextU32(state) >>> 5; // 27 bits
  const b = nextU32(state) >>> 6; // 26 bits
  return (a * 67108864 + b) / 9007199254740992;
}

/** Uniform integer in [0, m), m ≤ 2^32, without modulo bias (Lemire's method, via doubles). */
function nextBelow(state: Uint32Array, m: number): number {
  if (m <= 1) return 0;
  // 53-bit uniform times m: the bias is at most m / 2^53, negligible for any array size.
  return Math.floor(nextDouble(state) * m);
}

// ---------------------------------------------------------------------------------------------
// Normal deviates: a 65536-entry table of standard normal quantiles, indexed by 16 random
// bits (two deviates per 32-bit draw). The table is computed with arithmetic only (own exp and
// Φ series), rescaled to unit variance and rounded to float32, so it is the same everywhere.

let NORMAL_TABLE: Float64Array | null = null;

/** exp(−x) for 0 ≤ x ≤ ~40 with + − × ÷ only: scale down by 2^10, Taylor, square back. */
function expNeg(x: number): number {
  const r = x / 1024;
  // Taylor series of exp(−r) for r ≤ 0.04: 14 terms are far beyond double precision.
  let term = 1;
  let sum = 1;
  for (let k = 1; k <= 14; k++) {
    term = (term * -r) / k;
    sum += term;
  }
  for (let k = 0; k < 10; k++) sum *= sum;
  return sum;
}

const INV_SQRT_2PI = 0.3989422804014327;

/** Standard normal cdf for x ≥ 0 (Marsaglia's series: Φ(x) = ½ + φ(x)·Σ x^{2n+1}/(2n+1)!!). */
function phiCdf(x: number, pdf: number): number {
  let term = x;
  let sum = x;
  const x2 = x * x;
  for (let k = 3; k < 400; k += 2) {
    term = (term * x2) / k;
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return 0.5 + pdf * sum;
}

function normalTable(): Float64Array {
  if (NORMAL_TABLE !== null) return NORMAL_TABLE;
  const size = 65536;
  const half = size / 2;
  const t = new Float64Array(size);
  let x = 0;
  for (let k = half; k < size; k++) {
    const p = (k + 0.5) / size;
    // Newton on Φ(x) = p, warm-started from the previous quantile.
    for (let it = 0; it < 60; it++) {
      const pdf = INV_SQRT_2PI * expNeg((x * x) / 2);
      const step = (phiCdf(x, pdf) - p) / pdf;
      x -= step;
      if (Math.abs(step) < 1e-14) break;
    }
    t[k] = x;
    t[size - 1 - k] = -x;
  }
  // Rescale to unit variance (the discrete table slightly truncates the tails), then round to
  // float32 so that the last bits of the series never matter.
  let ss = 0;
  for (let k = 0; k < size; k++) ss += t[k] * t[k];
  const scale = Math.sqrt(size / ss);
  for (let k = 0; k < size; k++) t[k] = Math.fround(t[k] * scale);
  NORMAL_TABLE = t;
  return t;
}

/**
 * out[off + j] = add[addOff + j] + scale · g_j for j < len, g_j standard normal deviates from
 * `state` (two per 32-bit draw). With `add` null it writes scale · g_j.
 */
function fillNormals(
  state: Uint32Array,
  out: Float64Array,
  off: number,
  len: number,
  scale: number,
  add: Float32Array | null,
  addOff: number,
): void {
  const table = normalTable();
  let s0 = state[0] | 0;
  let s1 = state[1] | 0;
  let s2 = state[2] | 0;
  let s3 = state[3] | 0;
  let j = 0;
  while (j < len) {
    // xoshiro128** step, inlined.
    const m = Math.imul(s1, 5);
    const r = Math.imul((m << 7) | (m >>> 25), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
    const g0 = table[r & 0xffff];
    const g1 = table[r >>> 16];
    if (add === null) {
      out[off + j] = scale * g0;
      if (j + 1 < len) out[off + j + 1] = scale * g1;
    } else {
      out[off + j] = add[addOff + j] + scale * g0;
      if (j + 1 < len) out[off + j + 1] = add[addOff + j + 1] + scale * g1;
    }
    j += 2;
  }
  state[0] = s0;
  state[1] = s1;
  state[2] = s2;
  state[3] = s3;
}

// ---------------------------------------------------------------------------------------------
// Options and plan.

/** Fills defaults and validates; throws ConfigError on a bad option. */
export function resolveSynthOptions(partial: Partial<SynthOptions> = {}): SynthOptions {
  const o: SynthOptions = {
    ...DEFAULT_SYNTH_OPTIONS,
    nearCos: [...DEFAULT_SYNTH_OPTIONS.nearCos] as [number, number],
    ...partial,
  };
  const int = (key: keyof SynthOptions, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new ConfigError(`synth: ${key} must be an integer ≥ ${min}, got ${v}`, { key });
  };
  int('n', o.n, 1);
  int('dim', o.dim, 2);
  int('clusters', o.clusters, 1);
  if (!Number.isInteger(o.seed)) throw new ConfigError(`synth: seed must be an integer, got ${o.seed}`, { key: 'seed' });
  if (!(o.dupFraction >= 0 && o.dupFraction < 1)) {
    throw new ConfigError(`synth: dupFraction must be in [0, 1), got ${o.dupFraction}`, { key: 'dupFraction' });
  }
  if (!(o.exactFraction >= 0 && o.exactFraction <= 1)) {
    throw new ConfigError(`synth: exactFraction must be in [0, 1], got ${o.exactFraction}`, { key: 'exactFraction' });
  }
  if (!Array.isArray(o.nearCos) || o.nearCos.length !== 2) {
    throw new ConfigError('synth: nearCos must be a pair [lo, hi]', { key: 'nearCos' });
  }
  const [lo, hi] = o.nearCos;
  if (!(lo > -1 && lo <= hi && hi < 1)) {
    throw new ConfigError(`synth: nearCos must satisfy -1 < lo ≤ hi < 1, got [${lo}, ${hi}]`, { key: 'nearCos' });
  }
  if (!(o.spread >= 0 && Number.isFinite(o.spread))) {
    throw new ConfigError(`synth: spread must be a finite number ≥ 0, got ${o.spread}`, { key: 'spread' });
  }
  if (o.sizeDistribution !== 'uniform' && o.sizeDistribution !== 'heavy') {
    throw new ConfigError(`synth: sizeDistribution must be 'uniform' or 'heavy', got ${String(o.sizeDistribution)}`, {
      key: 'sizeDistribution',
    });
  }
  const nDup = Math.round(o.dupFraction * o.n);
  if (o.n - nDup < o.clusters) {
    throw new ConfigError(`synth: need at least one original row per cluster: n − duplicates = ${o.n - nDup} < clusters = ${o.clusters}`, {
      key: 'clusters',
    });
  }
  return o;
}

/** Sizes proportional to `w`, summing to `total`, every one ≥ 1 (largest-remainder rounding). */
function apportion(total: number, w: Float64Array): Int32Array {
  const k = w.length;
  let wsum = 0;
  for (let c = 0; c < k; c++) wsum += w[c];
  const sizes = new Int32Array(k).fill(1);
  const free = total - k;
  const rem = new Float64Array(k);
  let given = 0;
  for (let c = 0; c < k; c++) {
    const exact = (free * w[c]) / wsum;
    const f = Math.floor(exact);
    sizes[c] += f;
    rem[c] = exact - f;
    given += f;
  }
  // Hand out the remaining rows to the largest remainders (ties: lower cluster index).
  const order = Array.from({ length: k }, (_, c) => c).sort((a, b) => rem[b] - rem[a] || a - b);
  for (let t = 0; given < free; t++, given++) sizes[order[t]]++;
  return sizes;
}

/**
 * Cluster sizes summing to `total` (≥ k), every cluster ≥ 1. 'heavy': Zipf (exponent 1), with
 * the head lifted when needed so that cluster 0 holds at least 12% of the rows.
 */
function clusterQuotas(total: number, k: number, dist: SizeDistribution): Int32Array {
  const w = new Float64Array(k);
  if (dist === 'uniform' || k === 1) {
    w.fill(1);
    return apportion(total, w);
  }
  for (let c = 0; c < k; c++) w[c] = 1 / (c + 1);
  const sizes = apportion(total, w);
  const head = Math.min(total - (k - 1), Math.ceil(HEAVY_LARGEST_SHARE * total));
  if (sizes[0] >= head) return sizes;
  sizes[0] = head;
  sizes.set(apportion(total - head, w.subarray(1)), 1);
  return sizes;
}

/**
 * Decides, cheaply and deterministically, the duplicate structure and the cluster of every row.
 * Duplicate rows sit at random positions; their original (a non-duplicate row) may come earlier
 * or later in row order. Several copies may share one original.
 */
export function synthPlan(partial: Partial<SynthOptions> = {}): SynthPlan {
  const opts = resolveSynthOptions(partial);
  const { n, dim, clusters, seed } = opts;
  const rng = new Uint32Array(4);
  seedState(rng, seed, TAG_PLAN, 0);

  // Random permutation: the first nDup positions are duplicates, the rest originals.
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = nextBelow(rng, i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const nDup = Math.round(opts.dupFraction * n);
  const nExact = Math.round(opts.exactFraction * nDup);
  const nOrig = n - nDup;

  // Clusters of the originals: consecutive blocks of the (random) original part of perm.
  const label = new Int32Array(n);
  const quotas = clusterQuotas(nOrig, clusters, opts.sizeDistribution);
  {
    let t = nDup;
    for (let c = 0; c < clusters; c++) {
      for (let q = 0; q < quotas[c]; q++) label[perm[t++]] = c;
    }
  }

  const dupOf = new Int32Array(n).fill(-1);
  const cos = new Float64Array(n).fill(NaN);
  const exact = new Uint8Array(n);
  const [lo, hi] = opts.nearCos;
  for (let t = 0; t < nDup; t++) {
    const row = perm[t];
    const orig = perm[nDup + nextBelow(rng, nOrig)];
    dupOf[row] = orig;
    label[row] = label[orig];
    if (t < nExact) {
      exact[row] = 1;
      cos[row] = 1;
    } else {
      cos[row] = lo + (hi - lo) * nextDouble(rng);
    }
  }
  const clusterSizes = new Int32Array(clusters);
  for (let i = 0; i < n; i++) clusterSizes[label[i]]++;

  // Centres: random unit vectors, one stream per cluster.
  const centres = new Float32Array(clusters * dim);
  const buf = new Float64Array(dim);
  for (let c = 0; c < clusters; c++) {
    seedState(rng, seed, TAG_CENTRE, c);
    fillNormals(rng, buf, 0, dim, 1, null, 0);
    writeNormalised(buf, 0, dim, centres, c * dim);
  }
  return { opts, dupOf, cos, exact, label, clusterSizes, centres, nDup, nExact };
}

// ---------------------------------------------------------------------------------------------
// Rows.

/** out[outOff ..) = float32(v / ||v||) for v = src[off .. off+dim). */
function writeNormalised(src: Float64Array, off: number, dim: number, out: Float32Array, outOff: number): void {
  let ss = 0;
  for (let j = 0; j < dim; j++) ss += src[off + j] * src[off + j];
  if (!(ss > 0)) {
    // Degenerate (spread 0 cannot reach here: centres are unit); fall back to e_0.
    out.fill(0, outOff, outOff + dim);
    out[outOff] = 1;
    return;
  }
  const inv = 1 / Math.sqrt(ss);
  for (let j = 0; j < dim; j++) out[outOff + j] = src[off + j] * inv;
}

/** Scratch buffers reused across calls (no per-row allocation). */
interface Scratch {
  dim: number;
  state: Uint32Array;
  v: Float64Array;
  u: Float64Array;
  orig: Float32Array;
}
let SCRATCH: Scratch | null = null;
function scratch(dim: number): Scratch {
  if (SCRATCH === null || SCRATCH.dim !== dim) {
    SCRATCH = { dim, state: new Uint32Array(4), v: new Float64Array(dim), u: new Float64Array(dim), orig: new Float32Array(dim) };
  }
  return SCRATCH;
}

/** Writes original row `row` (not a duplicate) into out[outOff .. outOff+dim). */
function originalRow(plan: SynthPlan, row: number, out: Float32Array, outOff: number, s: Scratch): void {
  const { dim, seed, spread } = plan.opts;
  seedState(s.state, seed, TAG_ROW, row);
  fillNormals(s.state, s.v, 0, dim, spread / Math.sqrt(dim), plan.centres, plan.label[row] * dim);
  writeNormalised(s.v, 0, dim, out, outOff);
}

/**
 * Near duplicate of the float32 row `x`: normalize(c·x̂ + sqrt(1−c²)·u), u a random unit vector
 * orthogonal to x̂ (Gram–Schmidt in float64), so cos(x, x') = c up to float32 rounding.
 */
function nearRow(plan: SynthPlan, row: number, x: Float32Array, c: number, out: Float32Array, outOff: number, s: Scratch): void {
  const { dim, seed } = plan.opts;
  const u = s.u;
  const v = s.v;
  let xx = 0;
  for (let j = 0; j < dim; j++) xx += x[j] * x[j];
  const invx = 1 / Math.sqrt(xx);
  for (let j = 0; j < dim; j++) v[j] = x[j] * invx; // x̂
  seedState(s.state, seed, TAG_ROW, row);
  // Two Gram–Schmidt passes make u orthogonal to x̂ to double precision; a second draw covers
  // the (practically impossible) case of u parallel to x̂.
  for (let attempt = 0; ; attempt++) {
    fillNormals(s.state, u, 0, dim, 1, null, 0);
    for (let pass = 0; pass < 2; pass++) {
      let p = 0;
      for (let j = 0; j < dim; j++) p += u[j] * v[j];
      for (let j = 0; j < dim; j++) u[j] -= p * v[j];
    }
    let uu = 0;
    for (let j = 0; j < dim; j++) uu += u[j] * u[j];
    if (uu > 1e-6 || attempt >= 8) {
      const inv = uu > 0 ? 1 / Math.sqrt(uu) : 0;
      const sn = Math.sqrt(Math.max(0, 1 - c * c));
      for (let j = 0; j < dim; j++) u[j] = c * v[j] + sn * inv * u[j];
      break;
    }
  }
  writeNormalised(u, 0, dim, out, outOff);
}

/**
 * Writes rows [start, end) of the dataset into `out` (row-major, (end − start) × dim float32,
 * starting at `outOffset`). Deterministic: the same row always gets the same bytes, whatever the
 * chunking or the order of calls.
 */
export function fillRows(plan: SynthPlan, start: number, end: number, out: Float32Array, outOffset = 0): void {
  const { n, dim } = plan.opts;
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    throw new RangeError(`fillRows: bad range [${start}, ${end}) for n = ${n}`);
  }
  if (outOffset + (end - start) * dim > out.length) {
    throw new RangeError(`fillRows: output holds ${out.length} floats, need ${outOffset + (end - start) * dim}`);
  }
  const s = scratch(dim);
  for (let i = start; i < end; i++) {
    const off = outOffset + (i - start) * dim;
    const o = plan.dupOf[i];
    if (o < 0) {
      originalRow(plan, i, out, off, s);
    } else if (plan.exact[i] === 1) {
      originalRow(plan, o, out, off, s);
    } else {
      originalRow(plan, o, s.orig, 0, s);
      nearRow(plan, i, s.orig, plan.cos[i], out, off, s);
    }
  }
}

/** Planted duplicate groups (original + its copies), sorted by original row. */
export function groundTruth(plan: SynthPlan): DuplicateGroup[] {
  const byOrig = new Map<number, DuplicateCopy[]>();
  const n = plan.opts.n;
  for (let i = 0; i < n; i++) {
    const o = plan.dupOf[i];
    if (o < 0) continue;
    let list = byOrig.get(o);
    if (list === undefined) byOrig.set(o, (list = []));
    list.push({ row: i, cos: plan.cos[i], exact: plan.exact[i] === 1 });
  }
  return [...byOrig.entries()].sort((a, b) => a[0] - b[0]).map(([original, copies]) => ({ original, copies }));
}

/** Convenience wrapper bundling a plan with its generation methods. */
export class SynthDataset {
  readonly plan: SynthPlan;
  constructor(opts: Partial<SynthOptions> = {}) {
    this.plan = synthPlan(opts);
  }
  get n(): number {
    return this.plan.opts.n;
  }
  get dim(): number {
    return this.plan.opts.dim;
  }
  /** Writes rows [start, end) into `out` at `outOffset`. */
  fillRows(start: number, end: number, out: Float32Array, outOffset = 0): void {
    fillRows(this.plan, start, end, out, outOffset);
  }
  /** The whole matrix (n × dim); for small datasets only. */
  generate(): Float32Array {
    const out = new Float32Array(this.n * this.dim);
    fillRows(this.plan, 0, this.n, out);
    return out;
  }
  /** Yields consecutive chunks of at most `rows` rows: [start, end, data]. The buffer is reused. */
  *chunks(rows = 65536): Generator<[number, number, Float32Array]> {
    const buf = new Float32Array(Math.min(rows, this.n) * this.dim);
    for (let start = 0; start < this.n; start += rows) {
      const end = Math.min(this.n, start + rows);
      fillRows(this.plan, start, end, buf);
      yield [start, end, buf.subarray(0, (end - start) * this.dim)];
    }
  }
  groundTruth(): DuplicateGroup[] {
    return groundTruth(this.plan);
  }
}
