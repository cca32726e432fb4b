import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ConfigError } from '../src/errors.js';
import { SynthDataset, fillRows, groundTruth, resolveSynthOptions, synthPlan, type SynthOptions } from '../tools/synth.js';
import {
  compareDecisions,
  compareM,
  refAssign,
  refDecisions,
  refExtract,
  refKeepOrder,
  refKey,
  refMaxSim,
  refRank,
} from './reference.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

function whole(opts: Partial<SynthOptions>): { plan: ReturnType<typeof synthPlan>; X: Float32Array } {
  const plan = synthPlan(opts);
  const X = new Float32Array(plan.opts.n * plan.opts.dim);
  fillRows(plan, 0, plan.opts.n, X);
  return { plan, X };
}

function dot(X: Float32Array, d: number, a: number, b: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += X[a * d + t] * X[b * d + t];
  return s;
}

function cosine(X: Float32Array, d: number, a: number, b: number): number {
  return dot(X, d, a, b) / Math.sqrt(dot(X, d, a, a) * dot(X, d, b, b));
}

function bytesEqual(a: Float32Array, b: Float32Array): boolean {
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (ua.length !== ub.length) return false;
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** Small seeded LCG for test data (independent of the generator under test). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const SMALL: Partial<SynthOptions> = { n: 3000, dim: 48, clusters: 12, seed: 11, dupFraction: 0.25, exactFraction: 0.3 };

// ---------------------------------------------------------------------------------------------
// Generator.

test('synth: same seed gives the same bytes, a different seed differs', () => {
  const a = whole(SMALL).X;
  const b = whole({ ...SMALL }).X;
  assert.ok(bytesEqual(a, b), 'two generations with the same options differ');
  const c = whole({ ...SMALL, seed: 12 }).X;
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === c[i]) same++;
  assert.ok(same < a.length / 100, `seed 11 and 12 share ${same} of ${a.length} values`);
  const pa = synthPlan(SMALL);
  const pc = synthPlan({ ...SMALL, seed: 12 });
  assert.notDeepEqual(Array.from(pa.dupOf), Array.from(pc.dupOf));
});

test('synth: chunked generation, in any order and at any offset, equals whole generation', () => {
  const { plan, X } = whole(SMALL);
  const { n, dim } = plan.opts;
  // Irregular chunks, generated back to front.
  const sizes = [1, 7, 333, 64, 1000, 2];
  const bounds: [number, number][] = [];
  for (let s = 0, t = 0; s < n; t++) {
    const e = Math.min(n, s + sizes[t % sizes.length]);
    bounds.push([s, e]);
    s = e;
  }
  const Y = new Float32Array(n * dim).fill(NaN);
  for (const [s, e] of bounds.reverse()) {
    const buf = new Float32Array((e - s) * dim + 5);
    fillRows(plan, s, e, buf, 5);
    Y.set(buf.subarray(5), s * dim);
  }
  assert.ok(bytesEqual(X, Y), 'chunked generation differs from whole generation');
  // Through the class, in its chunk iterator.
  const ds = new SynthDataset(SMALL);
  const Z = new Float32Array(n * dim);
  for (const [s, , data] of ds.chunks(401)) Z.set(data, s * dim);
  assert.ok(bytesEqual(X, Z), 'SynthDataset.chunks differs from whole generation');
  assert.ok(bytesEqual(X, ds.generate()));
  // A single row far into the dataset, alone.
  const one = new Float32Array(dim);
  fillRows(plan, 2999, 3000, one);
  assert.ok(bytesEqual(one, X.subarray(2999 * dim)));
});

test('synth: fillRows rejects bad ranges and short buffers', () => {
  const plan = synthPlan({ ...SMALL, n: 100 });
  assert.throws(() => fillRows(plan, 0, 101, new Float32Array(101 * 48)), RangeError);
  assert.throws(() => fillRows(plan, 5, 4, new Float32Array(48)), RangeError);
  assert.throws(() => fillRows(plan, 0, 10, new Float32Array(10 * 48 - 1)), RangeError);
});

test('synth: rows are unit-norm within 1e-6 (odd and even dims)', () => {
  for (const dim of [2, 3, 47, 64]) {
    const { plan, X } = whole({ ...SMALL, n: 800, dim, clusters: 5 });
    for (let i = 0; i < plan.opts.n; i++) {
      const norm = Math.sqrt(dot(X, dim, i, i));
      assert.ok(Math.abs(norm - 1) <= 1e-6, `dim ${dim}: row ${i} has norm ${norm}`);
    }
    for (let c = 0; c < plan.opts.clusters; c++) {
      let ss = 0;
      for (let t = 0; t < dim; t++) ss += plan.centres[c * dim + t] ** 2;
      assert.ok(Math.abs(Math.sqrt(ss) - 1) <= 1e-6, `centre ${c} not unit`);
    }
  }
});

test('synth: plan structure (counts, originals, scattered positions, labels, ground truth)', () => {
  const plan = synthPlan({ ...SMALL, n: 20000, dupFraction: 0.3, exactFraction: 0.4 });
  const { n } = plan.opts;
  assert.equal(plan.nDup, Math.round(0.3 * n));
  assert.equal(plan.nExact, Math.round(0.4 * plan.nDup));
  let dups = 0;
  let exact = 0;
  let origLater = 0;
  for (let i = 0; i < n; i++) {
    const o = plan.dupOf[i];
    if (o < 0) {
      assert.ok(Number.isNaN(plan.cos[i]) && plan.exact[i] === 0);
      continue;
    }
    dups++;
    assert.equal(plan.dupOf[o], -1, `row ${i} copies row ${o}, which is itself a duplicate`);
    assert.notEqual(o, i);
    assert.equal(plan.label[i], plan.label[o], 'a duplicate must share its original cluster');
    if (plan.exact[i]) {
      exact++;
      assert.equal(plan.cos[i], 1);
    } else {
      assert.ok(plan.cos[i] >= 0.995 && plan.cos[i] <= 0.9995, `planted cos ${plan.cos[i]} outside nearCos`);
    }
    if (o > i) origLater++;
  }
  assert.equal(dups, plan.nDup);
  assert.equal(exact, plan.nExact);
  // Positions are random: the original is later about half of the time.
  assert.ok(origLater > 0.4 * dups && origLater < 0.6 * dups, `original later for ${origLater} of ${dups}`);
  // Cluster sizes match labels; every cluster non-empty.
  const sizes = new Int32Array(plan.opts.clusters);
  for (let i = 0; i < n; i++) sizes[plan.label[i]]++;
  assert.deepEqual(Array.from(sizes), Array.from(plan.clusterSizes));
  assert.ok(Math.min(...sizes) > 0);
  // Ground truth: every duplicate exactly once, groups sorted by original, copies ascending.
  const groups = groundTruth(plan);
  const seen = new Set<number>();
  let prev = -1;
  for (const g of groups) {
    assert.ok(g.original > prev);
    prev = g.original;
    assert.equal(plan.dupOf[g.original], -1);
    assert.ok(g.copies.length >= 1);
    for (let t = 0; t < g.copies.length; t++) {
      const c = g.copies[t];
      if (t > 0) assert.ok(c.row > g.copies[t - 1].row);
      assert.equal(plan.dupOf[c.row], g.original);
      assert.equal(c.cos, plan.cos[c.row]);
      assert.equal(c.exact, plan.exact[c.row] === 1);
      assert.ok(!seen.has(c.row));
      seen.add(c.row);
    }
  }
  assert.equal(seen.size, plan.nDup);
  assert.ok(groups.some((g) => g.copies.length > 1), 'expected some originals with several copies');
});

test('synth: exact copies are bitwise equal, near copies have the planted cosine within 1e-6', () => {
  const { plan, X } = whole(SMALL);
  const d = plan.opts.dim;
  let nExact = 0;
  let nNear = 0;
  for (const g of groundTruth(plan)) {
    const orig = X.subarray(g.original * d, (g.original + 1) * d);
    for (const c of g.copies) {
      const row = X.subarray(c.row * d, (c.row + 1) * d);
      if (c.exact) {
        nExact++;
        assert.ok(bytesEqual(orig, row), `exact copy ${c.row} of ${g.original} is not bitwise equal`);
        assert.equal(c.cos, 1);
      } else {
        nNear++;
        const cs = cosine(X, d, g.original, c.row);
        assert.ok(Math.abs(cs - c.cos) <= 1e-6, `near copy ${c.row} of ${g.original}: cos ${cs}, planted ${c.cos}`);
        assert.ok(!bytesEqual(orig, row));
      }
    }
  }
  assert.equal(nExact, plan.nExact);
  assert.equal(nNear, plan.nDup - plan.nExact);
  // A custom, wider near range is honoured too.
  const w = whole({ ...SMALL, n: 500, nearCos: [0.9, 0.95], exactFraction: 0 });
  for (const g of groundTruth(w.plan)) {
    for (const c of g.copies) {
      const cs = cosine(w.X, w.plan.opts.dim, g.original, c.row);
      assert.ok(cs >= 0.9 - 1e-6 && cs <= 0.95 + 1e-6 && Math.abs(cs - c.cos) <= 1e-6);
    }
  }
});

test('synth: rows that are not planted duplicates of each other are far apart (sampled)', () => {
  const { plan, X } = whole({ ...SMALL, n: 4000, dim: 64, clusters: 8 });
  const { n, dim } = plan.opts;
  const group = (i: number) => (plan.dupOf[i] < 0 ? i : plan.dupOf[i]);
  const rnd = lcg(5);
  let worst = -1;
  let sameCluster = 0;
  let sameClusterSum = 0;
  for (let s = 0; s < 200; s++) {
    const a = Math.floor(rnd() * n);
    for (let b = 0; b < n; b++) {
      if (group(a) === group(b)) continue;
      const cs = dot(X, dim, a, b);
      if (cs > worst) worst = cs;
      if (plan.label[a] === plan.label[b]) {
        sameCluster++;
        sameClusterSum += cs;
      }
    }
  }
  assert.ok(worst < 0.95, `a non-duplicate pair has cosine ${worst}`);
  const mean = sameClusterSum / sameCluster;
  // Default spread 0.75: 1 / (1 + 0.5625) ≈ 0.64.
  assert.ok(mean > 0.5 && mean < 0.8, `mean in-cluster cosine ${mean} outside [0.5, 0.8]`);
});

test('synth: heavy sizes put >= 10% of rows in the largest cluster; uniform sizes are even', () => {
  for (const [n, clusters, seed] of [
    [20000, 50, 1],
    [20000, 1000, 2],
    [100000, 20000, 3],
    [100000, 50000, 4],
  ] as const) {
    const plan = synthPlan({ n, dim: 8, clusters, seed, dupFraction: 0.2, sizeDistribution: 'heavy' });
    const largest = Math.max(...plan.clusterSizes);
    assert.ok(largest >= 0.1 * n, `heavy n=${n} k=${clusters}: largest cluster ${largest} < 10%`);
    const sorted = Array.from(plan.clusterSizes).sort((a, b) => b - a);
    assert.ok(sorted[Math.floor(clusters / 2)] * 20 < largest, 'heavy sizes should be skewed');
  }
  const plan = synthPlan({ n: 20000, dim: 8, clusters: 40, seed: 9, dupFraction: 0 });
  assert.ok(Math.max(...plan.clusterSizes) - Math.min(...plan.clusterSizes) <= 1);
});

test('synth: options are validated', () => {
  const bad: Partial<SynthOptions>[] = [
    { n: 0 },
    { n: 1.5 },
    { dim: 1 },
    { clusters: 0 },
    { seed: 0.5 },
    { dupFraction: 1 },
    { dupFraction: -0.1 },
    { exactFraction: 1.1 },
    { nearCos: [0.99, 0.98] },
    { nearCos: [0.99, 1] },
    { spread: -1 },
    { sizeDistribution: 'zipf' as never },
    { n: 10, clusters: 10, dupFraction: 0.5 },
  ];
  for (const b of bad) assert.throws(() => resolveSynthOptions(b), ConfigError, JSON.stringify(b));
  const d = resolveSynthOptions();
  assert.equal(d.spread, 0.75);
  assert.deepEqual(d.nearCos, [0.995, 0.9995]);
});

// ---------------------------------------------------------------------------------------------
// Reference: hand-computable cases.

test('reference: refMaxSim on hand-computed 2-D and 3-D cases (ties, zero, clamp)', () => {
  // x0=(1,0) x1=(0,1) x2=(.5,.5) x3=(-1,0) x4=(-.5,-.5)
  const A = new Float32Array([1, 0, 0, 1, 0.5, 0.5, -1, 0, -0.5, -0.5]);
  const a = refMaxSim(A, 2, [0, 1, 2, 3, 4]);
  assert.deepEqual(Array.from(a.M), [0, 0, 0.5, 0, 0.5]);
  // M[1]: x0·x1 = 0 exactly -> earliest member with 0; M[2]: tie between x0 and x1 -> earliest;
  // M[3]: best is x1 with exactly 0; M[4]: x3.
  assert.deepEqual(Array.from(a.arg), [-1, 0, 0, 1, 3]);

  // All earlier similarities negative -> clamp to 0, arg −1.
  const B = new Float32Array([1, 0, -0.5, 0.5, -0.25, -1]);
  const b = refMaxSim(B, 2, [0, 1, 2]);
  assert.deepEqual(Array.from(b.M), [0, 0, 0]);
  assert.deepEqual(Array.from(b.arg), [-1, -1, -1]);

  // Identical vectors in 3-D, in a permuted member order: rows [3, 0, 2, 1].
  const C = new Float32Array([0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1]);
  const c = refMaxSim(C, 3, [3, 0, 2, 1]);
  // member 1 (row 0) = member 0 (row 3): 1; member 2 (row 2, e_y): 0 -> tie at 0 -> arg 0;
  // member 3 (row 1) = rows 3 and 0: tie at 1 -> earliest member 0.
  assert.deepEqual(Array.from(c.M), [0, 1, 0, 1]);
  assert.deepEqual(Array.from(c.arg), [-1, 0, 0, 0]);

  // Decisions: eps 0 removes nothing (M = 1 is not > 1), eps 0.01 removes the copies.
  assert.deepEqual(refDecisions(c.M, 0), [false, false, false, false]);
  assert.deepEqual(refDecisions(c.M, 0.01), [false, true, false, true]);
  // A cluster of one keeps its member whatever eps.
  const one = refMaxSim(C, 3, [2]);
  assert.deepEqual(Array.from(one.M), [0]);
  assert.deepEqual(refDecisions(one.M, 1.5), [false]);
  assert.deepEqual(refDecisions([0, 0], 1.5), [true, true]);
  // Empty cluster.
  assert.equal(refMaxSim(C, 3, []).M.length, 0);
});

test('reference: refMaxSim equals the Gram-matrix formulation on random data', () => {
  const rnd = lcg(42);
  for (const [n, d] of [
    [1, 3],
    [2, 5],
    [40, 8],
    [90, 3],
  ] as const) {
    const X = new Float32Array(n * d);
    for (let i = 0; i < X.length; i++) X[i] = rnd() * 2 - 1;
    // Plant a few exact duplicates and a few negated rows.
    for (let i = 3; i < n; i += 7) X.copyWithin(i * d, (i - 3) * d, (i - 2) * d);
    for (let i = 5; i < n; i += 11) for (let t = 0; t < d; t++) X[i * d + t] = -X[(i - 1) * d + t];
    // Members: a permutation of the rows.
    const rows = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [rows[i], rows[j]] = [rows[j], rows[i]];
    }
    // Full n×n Gram matrix over members, zero diagonal, strict upper triangle, column max.
    const G: number[][] = rows.map((ri) => rows.map((rj) => dot(X, d, ri, rj)));
    for (let i = 0; i < n; i++) G[i][i] = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) G[i][j] = 0; // keep i < j only
    const Mg = new Float64Array(n);
    const argG = new Int32Array(n).fill(-1);
    for (let j = 0; j < n; j++) {
      let m = -Infinity;
      for (let i = 0; i < n; i++) {
        if (G[i][j] > m) {
          m = G[i][j];
          argG[j] = i;
        }
      }
      Mg[j] = Math.max(0, m);
    }
    const r = refMaxSim(X, d, rows);
    const mm = compareM(r.M, Mg, 0);
    assert.equal(mm, null, mm?.message);
    // Where the max is positive it is reached by a real (i < j) entry, and argmax agrees.
    for (let j = 0; j < n; j++) {
      if (r.M[j] > 0) assert.equal(r.arg[j], argG[j], `arg of member ${j}`);
      if (r.arg[j] >= 0) assert.equal(dot(X, d, rows[r.arg[j]], rows[j]), r.M[j]);
    }
  }
});

test('reference: refAssign (inner product and L2) with ties to the lowest centroid', () => {
  const X = new Float32Array([1, 0, 0, 1, 0.5, 0.5, -1, 0]);
  const C = new Float32Array([1, 0, 0, 1, 1, 0]); // centroid 2 duplicates centroid 0
  const ip = refAssign(X, 4, 2, C, 3, true);
  assert.deepEqual(Array.from(ip.nearest), [0, 1, 0, 1]); // row 2 ties 0/1/2 -> 0; row 3: 0 at c1
  assert.deepEqual(Array.from(ip.dist), [1, 1, 0.5, 0]);
  const l2 = refAssign(X, 4, 2, C, 3, false);
  assert.deepEqual(Array.from(l2.nearest), [0, 1, 0, 1]);
  assert.deepEqual(Array.from(l2.dist), [0, 0, 0.5, 2]);
  // Random check: the reported distance is the best over all centroids.
  const rnd = lcg(3);
  const n = 50;
  const d = 4;
  const k = 6;
  const Xr = Float32Array.from({ length: n * d }, () => rnd() - 0.5);
  const Cr = Float32Array.from({ length: k * d }, () => rnd() - 0.5);
  for (const inner of [true, false]) {
    const r = refAssign(Xr, n, d, Cr, k, inner);
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < k; c++) {
        let v = 0;
        for (let t = 0; t < d; t++) v += inner ? Xr[i * d + t] * Cr[c * d + t] : (Xr[i * d + t] - Cr[c * d + t]) ** 2;
        if (inner) assert.ok(v < r.dist[i] || (v === r.dist[i] && c >= r.nearest[i]));
        else assert.ok(v > r.dist[i] || (v === r.dist[i] && c >= r.nearest[i]));
      }
    }
  }
});

test('reference: refKey for each metric', () => {
  assert.deepEqual(Array.from(refKey({ metric: 'cosine', spherical: true, dist: [1, 0.5, -0.25] })), [0, 0.5, 1.25]);
  assert.deepEqual(Array.from(refKey({ metric: 'l2', spherical: false, dist: [2, 0.5] })), [2, 0.5]);
  assert.throws(() => refKey({ metric: 'l2', spherical: true, dist: [0] }));
  // Non-spherical cosine: uses cos(x, centroid) with both normalised, not dist.
  const X = new Float32Array([1, 0, 0, 2]);
  const C = new Float32Array([3, 0, 1, 1]);
  const k = refKey({ metric: 'cosine', spherical: false, dist: [99, 99], X, d: 2, nearest: [0, 1], centroids: C });
  assert.equal(k[0], 0);
  assert.ok(Math.abs(k[1] - (1 - Math.SQRT1_2)) < 1e-15);
  assert.throws(() => refKey({ metric: 'cosine', spherical: false, dist: [0] }));
});

test('reference: refRank is a stable sort (equal keys in ascending row order), both directions', () => {
  const nearest = [1, 0, 1, 1, 0, 1, 1];
  const key = [0.5, 0.2, 0.1, 0.5, 0.2, 0.9, 0.1];
  assert.deepEqual(refRank(nearest, key, 3, true), [[1, 4], [5, 0, 3, 2, 6], []]);
  assert.deepEqual(refRank(nearest, key, 3, false), [[1, 4], [2, 6, 0, 3, 5], []]);
  // All equal: row order either way.
  assert.deepEqual(refRank([0, 0, 0, 0], [1, 1, 1, 1], 1, true), [[0, 1, 2, 3]]);
  assert.deepEqual(refRank([0, 0, 0, 0], [1, 1, 1, 1], 1, false), [[0, 1, 2, 3]]);
  assert.throws(() => refRank([0, 2], [0, 0], 2, true), RangeError);
});

test('reference: refKeepOrder', () => {
  const rows = [7, 3, 9, 1];
  assert.deepEqual(refKeepOrder(rows, 'hard'), [7, 3, 9, 1]);
  assert.deepEqual(refKeepOrder(rows, 'easy'), [1, 9, 3, 7]);
  assert.deepEqual(rows, [7, 3, 9, 1], 'input must not be modified');
  assert.deepEqual(refKeepOrder(rows, 'random', [2, 0, 3, 1]), [9, 7, 1, 3]);
  assert.throws(() => refKeepOrder(rows, 'random'));
  assert.throws(() => refKeepOrder(rows, 'random', [0, 0, 1, 2]));
  assert.throws(() => refKeepOrder(rows, 'random', [0, 1, 2]));
});

test('reference: refDecisions is monotone in eps', () => {
  const rnd = lcg(8);
  const M = Float64Array.from({ length: 500 }, () => (rnd() < 0.3 ? 0 : 0.9 + 0.1 * rnd()));
  M[0] = 0;
  let prev = refDecisions(M, 0);
  assert.equal(prev.filter(Boolean).length, 0);
  for (const eps of [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2]) {
    const cur = refDecisions(M, eps);
    for (let j = 0; j < M.length; j++) assert.ok(!prev[j] || cur[j], `eps ${eps}: member ${j} came back`);
    assert.ok(cur.filter(Boolean).length >= prev.filter(Boolean).length);
    prev = cur;
  }
  assert.ok(prev.filter(Boolean).length > 0);
});

test('reference: refExtract walks clusters in order and splits kept/removed', () => {
  const ids = ['a', 'b', 'c', 'd', 'e', 'f'];
  const r = refExtract([[4, 0], [], [5, 2, 1, 3]], [[false, true], [], [false, false, true, false]], ids);
  assert.deepEqual(r.kept, ['e', 'f', 'c', 'd']);
  assert.deepEqual(r.removed, ['a', 'b']);
  assert.throws(() => refExtract([[0]], [], ids));
  assert.throws(() => refExtract([[0, 1]], [[false]], ids));
});

test('reference: compareM and compareDecisions report the first mismatch, skip the threshold band', () => {
  const ref = Float64Array.from([0, 0.5, 0.98, 0.99]);
  assert.equal(compareM(Float64Array.from([0, 0.500004, 0.98, 0.99]), ref), null);
  const m = compareM(Float64Array.from([0, 0.5, 0.9801, 0.95]), ref);
  assert.ok(m !== null && m.index === 2 && m.message.includes('M[2]'));
  assert.equal(compareM([0, NaN, 0.98, 0.99], ref)?.index, 1);
  assert.equal(compareM([0], ref)?.index, -1);

  const eps = 0.01; // threshold 0.99
  // Member 3 sits exactly on the threshold: either decision is accepted.
  assert.equal(compareDecisions([false, false, false, true], ref, eps), null);
  assert.equal(compareDecisions([false, false, false, false], ref, eps), null);
  const d = compareDecisions([false, true, false, false], ref, eps);
  assert.ok(d !== null && d.index === 1 && d.expected === false && d.ours === true);
  assert.equal(compareDecisions([0, 0, 1, 1], ref, 0.03), null); // 0.98, 0.99 > 0.97: removed
  assert.equal(compareDecisions([0, 0, 0, 1], ref, 0.03)?.index, 2);
  assert.equal(compareDecisions([false], ref, eps)?.index, -1);
  // A lone member is always kept, even near the threshold.
  assert.equal(compareDecisions([true], [0], 1)?.index, 0);
});

// ---------------------------------------------------------------------------------------------
// End to end on synthetic data: the reference finds exactly the planted duplicates.

test('reference on synthetic data: eps 0.02 removes exactly one fewer than each planted group', () => {
  const { plan, X } = whole({ n: 2500, dim: 64, clusters: 6, seed: 21, dupFraction: 0.2, exactFraction: 0.3 });
  const { n, dim, clusters } = plan.opts;
  // Assign to the planted centres, rank (cosine, spherical), dedup per cluster.
  const { nearest, dist } = refAssign(X, n, dim, plan.centres, clusters, true);
  const key = refKey({ metric: 'cosine', spherical: true, dist });
  for (const which of ['hard', 'easy'] as const) {
    const ranked = refRank(nearest, key, clusters, which === 'hard');
    let removed = 0;
    const removedPerCluster: boolean[][] = [];
    const ordered: number[][] = [];
    for (const rows of ranked) {
      const order = refKeepOrder(rows, which);
      const { M, arg } = refMaxSim(X, dim, order);
      const dec = refDecisions(M, 0.02);
      ordered.push(order);
      removedPerCluster.push(dec);
      for (let j = 0; j < order.length; j++) {
        const g = plan.dupOf[order[j]] < 0 ? order[j] : plan.dupOf[order[j]];
        if (dec[j]) {
          removed++;
          const o = order[arg[j]];
          const go = plan.dupOf[o] < 0 ? o : plan.dupOf[o];
          assert.equal(go, g, `row ${order[j]} removed because of row ${o} of another group`);
        }
      }
    }
    // A copy may land in another cluster than its original; count per cluster: every member of
    // a group after its first member in that cluster is removed, nothing else.
    let expected = 0;
    for (const rows of ranked) {
      const groups = new Set<number>();
      for (const r of rows) groups.add(plan.dupOf[r] < 0 ? r : plan.dupOf[r]);
      expected += rows.length - groups.size;
    }
    assert.equal(removed, expected, `${which}: removed ${removed}, expected ${expected}`);
    assert.ok(expected > 0.95 * plan.nDup, `planted duplicates mostly share a cluster (${expected} of ${plan.nDup})`);
    const ids = Array.from({ length: n }, (_, i) => `id${i}`);
    const ex = refExtract(ordered, removedPerCluster, ids);
    assert.equal(ex.removed.length, removed);
    assert.equal(ex.kept.length + ex.removed.length, n);
    assert.equal(new Set([...ex.kept, ...ex.removed]).size, n);
  }
});
