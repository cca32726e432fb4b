// Every step of the pipeline against the independent float64 reference (test/reference.ts) on
// generated data with planted duplicates: assignment, ranking, M and the keep/remove decisions,
// extraction, the planted duplicates, determinism, input formats, zero-copy views and step 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SynthDataset } from '../tools/synth.js';
import { createEmbeddingsFile, openEmbeddings, type EmbeddingsSpec } from '../src/embeddings.js';
import { computeCentroids } from '../src/steps/cluster.js';
import { assignAndSortClusters } from '../src/steps/sort.js';
import { semdedup, type WhichToKeep } from '../src/steps/dedup.js';
import { extractPrunedData } from '../src/steps/extract.js';
import { getEmbeddings, PathsMemmap, type Batch } from '../src/steps/embed.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { readIds, rowNumberIds, writeIdsMemmap, type Ids } from '../src/io/ids.js';
import { outputs } from '../src/layout.js';
import { InputError } from '../src/errors.js';
import { withSpec } from './helpers.js';
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
  referenceFromHalf,
  referenceToHalf,
} from './reference.js';

// ---------------------------------------------------------------------------------------------
// Fixture: one generated dataset, written as a raw float32 memmap like the original stores it.

const N = 4000;
const D = 32;
const K = 8;
const EPS = [0.01, 0.05, 0.1, 0.3];

const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 7, dupFraction: 0.2, exactFraction: 0.3 });
const X = ds.generate();
const ROOT = mkdtempSync(join(tmpdir(), 'semdedup-pipeline-'));
const EMB = join(ROOT, 'emb.f32');
writeFileSync(EMB, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
const ID_LIST = Array.from({ length: N }, (_, i) => `n0423_${String(i).padStart(5, '0')}.JPEG`);
const SPEC: EmbeddingsSpec = { path: EMB, format: 'memmap', count: N, dim: D };

process.on('exit', () => rmSync(ROOT, { recursive: true, force: true }));

let dirCount = 0;
function newDir(tag: string): string {
  return join(ROOT, `${tag}-${dirCount++}`);
}

function dot64(A: ArrayLike<number>, a: number, B: ArrayLike<number>, b: number, d = D): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += A[a * d + t]! * B[b * d + t]!;
  return s;
}

function i64(path: string): BigInt64Array {
  const d = readNpy(path).data;
  assert.ok(d instanceof BigInt64Array, `${path}: expected int64`);
  return d;
}
function f64(path: string): Float64Array {
  const d = readNpy(path).data;
  assert.ok(d instanceof Float64Array, `${path}: expected float64`);
  return d;
}
function f32(path: string): Float32Array {
  const d = readNpy(path).data;
  assert.ok(d instanceof Float32Array, `${path}: expected float32`);
  return d;
}

/** Rows of each cluster from an (order, offsets) pair. */
function perCluster(order: BigInt64Array, offsets: BigInt64Array): number[][] {
  const out: number[][] = [];
  for (let c = 0; c + 1 < offsets.length; c++) {
    const rows: number[] = [];
    for (let p = Number(offsets[c]); p < Number(offsets[c + 1]); p++) rows.push(Number(order[p]));
    out.push(rows);
  }
  return out;
}

interface Run {
  dir: string;
  centroids: Float32Array;
  nearest: BigInt64Array;
  dist: Float32Array;
}

/** Steps 2 and 3 in a fresh folder (centroids trained unless given). */
async function clusterAndSort(o: {
  spherical: boolean;
  simMetric: 'cosine' | 'l2';
  keepHard: boolean;
  embeddings?: EmbeddingsSpec;
  centroids?: string;
  threads?: number;
}): Promise<Run> {
  const dir = newDir('run');
  const embeddings = o.embeddings ?? SPEC;
  await withSpec(computeCentroids, {
    embeddings, outputDir: dir, k: K, niter: 10, seed: 1234, spherical: o.spherical, device: 'cpu',
    ...(o.centroids ? { centroids: o.centroids } : {}), ...(o.threads ? { threads: o.threads } : {}),
  });
  await withSpec(assignAndSortClusters, {
    outputDir: dir, simMetric: o.simMetric, keepHard: o.keepHard, spherical: o.spherical, embeddings,
    ...(o.threads ? { threads: o.threads } : {}),
  });
  return {
    dir,
    centroids: f32(outputs.centroids(dir)),
    nearest: i64(outputs.nearest(dir)),
    dist: f32(outputs.dist(dir)),
  };
}

// A spherical cosine run shared by the step-4/5 tests (hard first).
let baseRun: Promise<Run> | undefined;
function base(): Promise<Run> {
  baseRun ??= clusterAndSort({ spherical: true, simMetric: 'cosine', keepHard: true });
  return baseRun;
}

// ---------------------------------------------------------------------------------------------
// Step 2: assignment.

for (const spherical of [true, false]) {
  test(`step 2: nearest/dist equal the float64 assignment on our centroids (${spherical ? 'spherical, IP' : 'non-spherical, L2'})`, async () => {
    const r = await clusterAndSort({ spherical, simMetric: spherical ? 'cosine' : 'l2', keepHard: true });
    assert.equal(r.centroids.length, K * D);
    assert.equal(r.nearest.length, N);
    assert.equal(r.dist.length, N);
    if (spherical) {
      for (let c = 0; c < K; c++) {
        const nn = dot64(r.centroids, c, r.centroids, c);
        assert.ok(Math.abs(nn - 1) < 1e-5, `spherical centroid ${c} has squared norm ${nn}`);
      }
    }
    const ref = refAssign(X, N, D, r.centroids, K, spherical);
    const score = (i: number, c: number) => {
      if (spherical) return dot64(X, i, r.centroids, c);
      let s = 0;
      for (let t = 0; t < D; t++) s += (X[i * D + t]! - r.centroids[c * D + t]!) ** 2;
      return s;
    };
    let differ = 0;
    const sizes = new Array<number>(K).fill(0);
    for (let i = 0; i < N; i++) {
      const ours = Number(r.nearest[i]);
      assert.ok(ours >= 0 && ours < K, `row ${i}: nearest ${ours} outside [0, ${K})`);
      sizes[ours]!++;
      if (ours !== ref.nearest[i]) {
        differ++;
        const gap = Math.abs(score(i, ours) - score(i, ref.nearest[i]!));
        assert.ok(gap <= 1e-5, `row ${i}: nearest ${ours}, reference ${ref.nearest[i]} with scores ${score(i, ours)} vs ${score(i, ref.nearest[i]!)} (not a near tie)`);
      }
      assert.ok(Math.abs(r.dist[i]! - ref.dist[i]!) <= 1e-5, `row ${i}: dist ${r.dist[i]}, reference ${ref.dist[i]}`);
    }
    assert.ok(differ <= 2, `${differ} rows assigned differently (near ties)`);
    assert.ok(sizes.every((s) => s > 0), `empty cluster in ${sizes.join(',')}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Step 3: ranking.

const RANK_CASES: { name: string; spherical: boolean; metric: 'cosine' | 'l2'; keepHard: boolean }[] = [];
for (const keepHard of [true, false]) {
  RANK_CASES.push({ name: 'cosine + spherical', spherical: true, metric: 'cosine', keepHard });
  RANK_CASES.push({ name: 'cosine + non-spherical', spherical: false, metric: 'cosine', keepHard });
  RANK_CASES.push({ name: 'l2', spherical: false, metric: 'l2', keepHard });
}

for (const rc of RANK_CASES) {
  test(`step 3: ranking equals the reference (${rc.name}, keep_hard ${rc.keepHard})`, async () => {
    const r = await clusterAndSort({ spherical: rc.spherical, simMetric: rc.metric, keepHard: rc.keepHard });
    const order = i64(outputs.order(r.dir));
    const offsets = i64(outputs.offsets(r.dir));
    const distance = f32(outputs.sortKey(r.dir));
    assert.equal(order.length, N);
    assert.equal(offsets.length, K + 1);
    assert.equal(offsets[0], 0n);
    assert.equal(offsets[K], BigInt(N));
    const ours = perCluster(order, offsets);
    const nearest = Array.from(r.nearest, Number);
    // The float64 distance of step 3 (docs/algorithm.md).
    const key64 = refKey({ metric: rc.metric, spherical: rc.spherical, dist: Array.from(r.dist), X, d: D, nearest, centroids: r.centroids });
    if (rc.metric === 'l2' || rc.spherical) {
      // The key comes from our float32 dist_to_cent by float32 arithmetic (as the original's
      // float32 pandas column): the ranking must be exactly the reference's on that key.
      const key32 = rc.metric === 'l2' ? Float64Array.from(r.dist) : Float64Array.from(r.dist, (v) => Math.fround(1 - v));
      const ref = refRank(nearest, key32, K, rc.keepHard);
      assert.deepEqual(ours, ref);
      for (let p = 0; p < N; p++) assert.equal(distance[p], key32[Number(order[p])], `cluster_distance[${p}]`);
    } else {
      // cosine, non-spherical: 1 − cos(x, centroid) computed in float32 vs float64: members of
      // a near tie may swap.
      const ref = refRank(nearest, key64, K, rc.keepHard);
      for (let c = 0; c < K; c++) {
        assert.deepEqual([...ours[c]!].sort((a, b) => a - b), [...ref[c]!].sort((a, b) => a - b), `cluster ${c} members`);
        for (let t = 0; t < ref[c]!.length; t++) {
          const a = ours[c]![t]!;
          const b = ref[c]![t]!;
          if (a !== b) assert.ok(Math.abs(key64[a]! - key64[b]!) < 1e-6, `cluster ${c} position ${t}: row ${a} (key ${key64[a]}) where the reference has row ${b} (key ${key64[b]})`);
        }
      }
      // Our order is exactly sorted by our own stored float32 key, ties by row.
      const ownKey = new Float64Array(N);
      for (let p = 0; p < N; p++) ownKey[Number(order[p])] = distance[p]!;
      assert.deepEqual(ours, refRank(nearest, ownKey, K, rc.keepHard));
      for (let i = 0; i < N; i++) assert.ok(Math.abs(ownKey[i]! - key64[i]!) < 1e-6, `row ${i}: key ${ownKey[i]} vs float64 ${key64[i]}`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Step 4 and 5.

interface DedupCheck {
  keepOrder: BigInt64Array;
  keepIndex: BigInt64Array;
  offsets: BigInt64Array;
  M: Float64Array;
  Mrow: BigInt64Array;
  /** Reference M per cluster, in the engine's keep order. */
  refM: Float64Array[];
  keepRows: number[][];
}

async function dedupAndCheck(r: Run, which: WhichToKeep, seed = 1234, threads?: number): Promise<DedupCheck> {
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: which, epsList: EPS, seed, device: 'cpu', ...(threads ? { threads } : {}) });
  const order = i64(outputs.order(r.dir));
  const offsets = i64(outputs.offsets(r.dir));
  const keepOrder = i64(outputs.keepOrder(r.dir));
  const keepIndex = i64(outputs.keepIndex(r.dir));
  const M = f64(outputs.M(r.dir));
  const Mrow = i64(outputs.Marg(r.dir));
  assert.equal(M.length, N);
  assert.equal(Mrow.length, N);
  const clusters = perCluster(order, offsets);
  const keepRows: number[][] = [];
  const refM: Float64Array[] = [];
  const clusterOf = new Int32Array(N);
  for (let c = 0; c < K; c++) for (const row of clusters[c]!) clusterOf[row] = c;
  for (let c = 0; c < K; c++) {
    const b = Number(offsets[c]);
    const m = clusters[c]!.length;
    const perm = Array.from(keepIndex.subarray(b, b + m), Number);
    if (which === 'random') {
      const seen = new Uint8Array(m);
      for (const p of perm) {
        assert.ok(Number.isInteger(p) && p >= 0 && p < m && !seen[p], `cluster ${c}: keep_index is not a permutation of 0..${m - 1}`);
        seen[p] = 1;
      }
    }
    const rows = refKeepOrder(clusters[c]!, which, which === 'random' ? perm : undefined);
    assert.deepEqual(Array.from(keepOrder.subarray(b, b + m), Number), rows, `cluster ${c}: keep order`);
    if (which !== 'random') assert.deepEqual(perm, which === 'hard' ? rows.map((_, i) => i) : rows.map((_, i) => m - 1 - i), `cluster ${c}: keep_index`);
    keepRows.push(rows);
    const ref = refMaxSim(X, D, rows);
    refM.push(ref.M);
    const bad = compareM(M.subarray(b, b + m), ref.M, 1e-5);
    assert.equal(bad, null, `cluster ${c} (${which}): ${bad?.message}`);
    // M_row: an earlier member of the same cluster whose similarity is M.
    const pos = new Map<number, number>();
    rows.forEach((row, t) => pos.set(row, t));
    for (let t = 0; t < m; t++) {
      const mv = M[b + t]!;
      const arg = Number(Mrow[b + t]);
      if (mv > 1e-5) {
        assert.ok(arg >= 0 && arg < N, `cluster ${c} position ${t}: M ${mv} but M_row ${arg}`);
        assert.equal(clusterOf[arg], c, `cluster ${c} position ${t}: M_row ${arg} is in cluster ${clusterOf[arg]}`);
        const at = pos.get(arg)!;
        assert.ok(at < t, `cluster ${c} position ${t}: M_row ${arg} is at keep position ${at}, not earlier`);
        const s = dot64(X, arg, X, rows[t]!);
        assert.ok(Math.abs(s - mv) <= 1e-5, `cluster ${c} position ${t}: dot with M_row ${s}, M ${mv}`);
      }
      if (t === 0) assert.equal(mv, 0, `cluster ${c}: M of the first member`);
      if (mv === 0 && t === 0) assert.equal(arg, -1, `cluster ${c}: M_row of the first member`);
    }
  }
  return { keepOrder, keepIndex, offsets, M, Mrow, refM, keepRows };
}

/** Checks the decisions per eps and step 5's outputs against the reference; returns removal flags per eps. */
async function checkDecisionsAndExtract(r: Run, chk: DedupCheck, ids: Ids | undefined, idList: readonly string[]): Promise<Map<number, boolean[][]>> {
  const flagsByEps = new Map<number, boolean[][]>();
  for (const eps of EPS) {
    const keptTxt = join(r.dir, `kept_${eps}.txt`);
    const removedTxt = join(r.dir, `removed_${eps}.txt`);
    const ex = await extractPrunedData({ outputDir: r.dir, eps, output: keptTxt, ...(ids ? { ids } : {}) });
    await extractPrunedData({ outputDir: r.dir, eps, output: removedTxt, removed: true, ...(ids ? { ids } : {}) });
    const removedSet = new Set(Array.from(ex.removedRows, Number));
    const oursFlags: boolean[][] = [];
    const expectFlags: boolean[][] = [];
    for (let c = 0; c < K; c++) {
      const rows = chk.keepRows[c]!;
      const ours = rows.map((row) => removedSet.has(row));
      const bad = compareDecisions(ours, chk.refM[c]!, eps, 1e-5);
      assert.equal(bad, null, `eps ${eps}, cluster ${c}: ${bad?.message}`);
      // The reference decision, except where SPEC lets a member within 1e-5 of 1 − eps go either way.
      const ref = refDecisions(chk.refM[c]!, eps);
      oursFlags.push(ours);
      expectFlags.push(ref.map((v, t) => (Math.abs(chk.refM[c]![t]! - (1 - eps)) <= 1e-5 ? ours[t]! : v)));
    }
    flagsByEps.set(eps, oursFlags);
    const want = refExtract(chk.keepRows, expectFlags, idList);
    const keptText = readFileSync(keptTxt, 'utf8');
    const removedText = readFileSync(removedTxt, 'utf8');
    // POSIX text files: every id followed by a newline.
    assert.equal(keptText, want.kept.map((id) => `${id}\n`).join(''), `eps ${eps}: kept ids`);
    assert.equal(removedText, want.removed.map((id) => `${id}\n`).join(''), `eps ${eps}: removed ids`);
    // The original's bytes on request: joined by newlines, no final one.
    const originalTxt = join(r.dir, `kept_${eps}_original.txt`);
    await extractPrunedData({ outputDir: r.dir, eps, output: originalTxt, fileFormat: 'original', ...(ids ? { ids } : {}) });
    assert.equal(readFileSync(originalTxt, 'utf8'), want.kept.join('\n'), `eps ${eps}: kept ids in the original's bytes`);
    const keptRowsNpy = i64(outputs.keptRows(r.dir, eps));
    const keptRowsWant: number[] = [];
    chk.keepRows.forEach((rows, c) => rows.forEach((row, t) => { if (!expectFlags[c]![t]) keptRowsWant.push(row); }));
    assert.deepEqual(Array.from(keptRowsNpy, Number), keptRowsWant, `eps ${eps}: kept_rows_eps${eps}.npy`);
    assert.equal(ex.summary.kept + ex.summary.removed, N);
    assert.equal(ex.summary.kept, keptRowsWant.length);
  }
  // A lower eps removes less.
  for (let e = 1; e < EPS.length; e++) {
    const lo = flagsByEps.get(EPS[e - 1]!)!.flat().filter(Boolean).length;
    const hi = flagsByEps.get(EPS[e]!)!.flat().filter(Boolean).length;
    assert.ok(lo <= hi, `eps ${EPS[e - 1]} removes ${lo}, eps ${EPS[e]} removes ${hi}`);
  }
  return flagsByEps;
}

for (const which of ['hard', 'easy', 'random'] as const) {
  test(`step 4/5: M, M_row, decisions for eps ${EPS.join(', ')} and extracted ids equal the reference (which_to_keep ${which})`, async () => {
    const r = await base();
    const chk = await dedupAndCheck(r, which);
    const ids = readIds(writeIdsOnce(), { format: 'memmap', dtype: 'S24', count: N });
    await checkDecisionsAndExtract(r, chk, ids, ID_LIST);
  });
}

let idsFile: string | undefined;
function writeIdsOnce(): string {
  if (!idsFile) {
    idsFile = join(ROOT, 'ids.S24');
    writeIdsMemmap(idsFile, ID_LIST, 24);
  }
  return idsFile;
}

test('step 4: random keep order: same seed, same order; another seed, another order', async () => {
  const r = await base();
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'random', epsList: [0.05], seed: 5, device: 'cpu' });
  const a = readFileSync(outputs.keepIndex(r.dir));
  const aIdx = i64(outputs.keepIndex(r.dir));
  const ma = readFileSync(outputs.M(r.dir));
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'random', epsList: [0.05], seed: 5, device: 'cpu' });
  assert.ok(a.equals(readFileSync(outputs.keepIndex(r.dir))), 'same seed gave another keep order');
  assert.ok(ma.equals(readFileSync(outputs.M(r.dir))), 'same seed gave another M');
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'random', epsList: [0.05], seed: 6, device: 'cpu' });
  const c = i64(outputs.keepIndex(r.dir));
  const offsets = i64(outputs.offsets(r.dir));
  for (let cl = 0; cl < K; cl++) {
    const b = Number(offsets[cl]);
    const e = Number(offsets[cl + 1]);
    if (e - b > 2)
      assert.notDeepEqual(Array.from(c.subarray(b, e)), Array.from(aIdx.subarray(b, e)), `cluster ${cl}: seeds 5 and 6 give the same order`);
  }
});

// ---------------------------------------------------------------------------------------------
// Planted duplicates.

test('planted duplicates: one survivor per same-cluster group at eps 0.01; exact copies removed but the first', async () => {
  const r = await base();
  const chk = await dedupAndCheck(r, 'hard');
  const flags = await checkDecisionsAndExtract(r, chk, undefined, rowNumberIds(N).toArray());
  const removed = new Uint8Array(N);
  flags.get(0.01)!.forEach((fl, c) => fl.forEach((f, t) => { if (f) removed[chk.keepRows[c]![t]!] = 1; }));
  const posInKeep = new Int32Array(N);
  const clusterOf = new Int32Array(N);
  chk.keepRows.forEach((rows, c) => rows.forEach((row, t) => { posInKeep[row] = t; clusterOf[row] = c; }));
  const removedAt = (eps: number) => {
    const out = new Uint8Array(N);
    flags.get(eps)!.forEach((fl, c) => fl.forEach((f, t) => { if (f) out[chk.keepRows[c]![t]!] = 1; }));
    return out;
  };
  const removedByEps = EPS.map(removedAt);
  const groups = ds.groundTruth();
  assert.ok(groups.length > 100, `only ${groups.length} planted groups`);
  let sameCluster = 0;
  let oneSurvivor = 0;
  const failures: string[] = [];
  for (const g of groups) {
    const members = [g.original, ...g.copies.map((c) => c.row)];
    const cl = clusterOf[g.original]!;
    // Exact copies and the original are the same vector: always in one cluster, and every one
    // but the first in keep order is removed at every eps.
    const exact = [g.original, ...g.copies.filter((c) => c.exact).map((c) => c.row)];
    for (const row of exact) assert.equal(clusterOf[row], cl, `exact copy ${row} of ${g.original} in another cluster`);
    exact.sort((a, b) => posInKeep[a]! - posInKeep[b]!);
    for (let e = 0; e < EPS.length; e++)
      for (const row of exact.slice(1)) assert.equal(removedByEps[e]![row], 1, `eps ${EPS[e]}: exact copy ${row} of ${g.original} is kept`);
    if (!members.every((m) => clusterOf[m] === cl)) continue;
    sameCluster++;
    const survivors = members.filter((m) => !removed[m]);
    if (survivors.length === 1) {
      oneSurvivor++;
      continue;
    }
    // More than one survivor is only possible when two near copies of one original are less
    // similar to each other than 1 − eps (each is within 0.995 of the original, not of each other).
    let allPairsClose = true;
    for (let a = 0; a < members.length; a++)
      for (let b = a + 1; b < members.length; b++)
        if (dot64(X, members[a]!, X, members[b]!) <= 0.99 + 1e-5) allPairsClose = false;
    if (allPairsClose || survivors.length === 0) failures.push(`group of ${g.original} (${members.length} members): ${survivors.length} survivors`);
  }
  assert.deepEqual(failures, []);
  assert.ok(sameCluster > 0.9 * groups.length, `${sameCluster} of ${groups.length} groups in one cluster`);
  assert.ok(oneSurvivor > 0.9 * sameCluster, `${oneSurvivor} of ${sameCluster} groups with exactly one survivor`);
});

test('step 4: decisions for members whose M lies just off 1 − eps equal the float64 decisions', async () => {
  // Near copies planted at cosine 0.99 ± 5e-5: for eps 0.01 many M fall within 1e-4 of the threshold.
  const n = 3000;
  const d = 48;
  const k = 6;
  const near = new SynthDataset({ n, dim: d, clusters: k, seed: 21, dupFraction: 0.3, exactFraction: 0, nearCos: [0.98995, 0.99005] });
  const Xn = near.generate();
  const path = join(ROOT, 'near.f32');
  writeFileSync(path, new Uint8Array(Xn.buffer, Xn.byteOffset, Xn.byteLength));
  const spec: EmbeddingsSpec = { path, dim: d };
  const dir = newDir('near');
  await withSpec(computeCentroids, { embeddings: spec, outputDir: dir, k, niter: 10, seed: 1234, spherical: true, device: 'cpu' });
  await withSpec(assignAndSortClusters, { outputDir: dir, simMetric: 'cosine', keepHard: true, spherical: true });
  const epsList = [0.01, 0.0100001, 0.00999];
  await withSpec(semdedup, { embeddings: spec, outputDir: dir, whichToKeep: 'hard', epsList, device: 'cpu' });
  const keepOrder = i64(outputs.keepOrder(dir));
  const offsets = i64(outputs.offsets(dir));
  const M = f64(outputs.M(dir));
  const clusters = perCluster(keepOrder, offsets);
  let close = 0;
  for (const eps of epsList) {
    const ex = await extractPrunedData({ outputDir: dir, eps });
    const removedSet = new Set(Array.from(ex.removedRows, Number));
    for (let c = 0; c < k; c++) {
      const rows = clusters[c]!;
      const refM = refMaxSim(Xn, d, rows).M;
      const b = Number(offsets[c]);
      const badM = compareM(M.subarray(b, b + rows.length), refM, 1e-5);
      assert.equal(badM, null, `cluster ${c}: ${badM?.message}`);
      const bad = compareDecisions(rows.map((r) => removedSet.has(r)), refM, eps, 1e-5);
      assert.equal(bad, null, `eps ${eps}, cluster ${c}: ${bad?.message}`);
      // Members that probe the threshold closely (outside the contract's 1e-5 band).
      for (let t = 0; t < rows.length; t++) {
        const gap = Math.abs(refM[t]! - (1 - eps));
        if (gap > 1e-5 && gap < 1e-4) close++;
      }
    }
  }
  assert.ok(close > 50, `only ${close} members within 1e-4 of a threshold: the test data misses its purpose`);
});

// ---------------------------------------------------------------------------------------------
// Determinism.

const DEDUP_FILES = (dir: string) => [outputs.keepOrder(dir), outputs.keepIndex(dir), outputs.M(dir), outputs.Marg(dir)];

test('determinism: dedup with 1 and 2 threads writes byte-identical M and M_row', async () => {
  const r = await base();
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu', threads: 1 });
  const one = DEDUP_FILES(r.dir).map((p) => readFileSync(p));
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu', threads: 2 });
  const two = DEDUP_FILES(r.dir).map((p) => readFileSync(p));
  DEDUP_FILES(r.dir).forEach((p, i) => assert.ok(one[i]!.equals(two[i]!), `${p} differs between 1 and 2 threads`));
});

async function wholePipeline(dir: string, emb: EmbeddingsSpec, ids?: Ids): Promise<Map<string, Buffer>> {
  await withSpec(computeCentroids, { embeddings: emb, outputDir: dir, k: K, niter: 10, seed: 99, spherical: true, device: 'cpu' });
  await withSpec(assignAndSortClusters, { outputDir: dir, simMetric: 'cosine', keepHard: true, spherical: true, exportSortedClusters: true, ...(ids ? { ids } : {}) });
  await withSpec(semdedup, { embeddings: emb, outputDir: dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu' });
  const files = [outputs.centroids(dir), outputs.nearest(dir), outputs.dist(dir), outputs.order(dir), outputs.offsets(dir), outputs.sortKey(dir), ...DEDUP_FILES(dir)];
  for (const eps of EPS) {
    await extractPrunedData({ outputDir: dir, eps, output: join(dir, `kept_eps${eps}.txt`), ...(ids ? { ids } : {}) });
    files.push(join(dir, `kept_eps${eps}.txt`), outputs.keptRows(dir, eps));
  }
  for (let c = 0; c < K; c++) files.push(join(dir, 'sorted_clusters', `cluster_${c}.npy`));
  const out = new Map<string, Buffer>();
  for (const f of files) out.set(f.slice(dir.length), readFileSync(f));
  return out;
}

test('determinism: rerunning the whole pipeline gives byte-identical outputs', async () => {
  const ids = readIds(writeIdsOnce(), { format: 'memmap', dtype: 'S24', count: N });
  const a = await wholePipeline(newDir('det'), SPEC, ids);
  const b = await wholePipeline(newDir('det'), SPEC, ids);
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, buf] of a) assert.ok(buf.equals(b.get(name)!), `${name} differs between two runs`);
});

// ---------------------------------------------------------------------------------------------
// Input formats.

test('input formats: .npy float32, raw memmap without a count give the same results as the raw memmap', async () => {
  const r = await base();
  const npyPath = join(ROOT, 'emb32.npy');
  const e = createEmbeddingsFile(npyPath, N, D, { format: 'npy' });
  (e.view() as Float32Array).set(X);
  e.close();
  const hdr = readNpy(npyPath);
  assert.equal(hdr.header.descr, '<f4');
  assert.deepEqual(hdr.header.shape, [N, D]);
  const noCount = openEmbeddings({ path: EMB, dim: D });
  assert.equal(noCount.n, N);
  assert.equal(noCount.format, 'memmap');
  noCount.close();
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu' });
  const want = DEDUP_FILES(r.dir).map((p) => readFileSync(p));
  for (const spec of [{ path: npyPath } as EmbeddingsSpec, { path: EMB, dim: D } as EmbeddingsSpec]) {
    const rr = await clusterAndSort({ spherical: true, simMetric: 'cosine', keepHard: true, embeddings: spec, centroids: outputs.centroids(r.dir) });
    assert.ok(readFileSync(outputs.order(rr.dir)).equals(readFileSync(outputs.order(r.dir))), `${spec.path}: another cluster order`);
    await withSpec(semdedup, { embeddings: spec, outputDir: rr.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu' });
    DEDUP_FILES(rr.dir).forEach((p, i) => assert.ok(readFileSync(p).equals(want[i]!), `${spec.path}: ${p} differs from the raw memmap run`));
  }
});

test('input formats: .npy float16, M against the reference on the float16-rounded values', async () => {
  const h = new Uint16Array(N * D);
  for (let i = 0; i < h.length; i++) h[i] = referenceToHalf(X[i]!);
  const X16 = Float32Array.from(h, referenceFromHalf);
  const path = join(ROOT, 'emb16.npy');
  writeNpy(path, h, { shape: [N, D], float16: true });
  const emb = openEmbeddings({ path });
  assert.equal(emb.dtype, 'float16');
  assert.equal(emb.n, N);
  assert.equal(emb.d, D);
  const rows = emb.rows(10, 12);
  for (let t = 0; t < 2 * D; t++) assert.equal(rows[t], X16[10 * D + t], 'rows() decodes float16');
  emb.close();
  const r = await clusterAndSort({ spherical: true, simMetric: 'cosine', keepHard: true, embeddings: { path } });
  // Assignment on the float16-rounded values.
  const ref = refAssign(X16, N, D, r.centroids, K, true);
  for (let i = 0; i < N; i++) assert.ok(Math.abs(r.dist[i]! - ref.dist[i]!) <= 1e-5, `row ${i}: dist ${r.dist[i]} vs ${ref.dist[i]}`);
  await withSpec(semdedup, { embeddings: { path }, outputDir: r.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu' });
  const keepOrder = i64(outputs.keepOrder(r.dir));
  const offsets = i64(outputs.offsets(r.dir));
  const M = f64(outputs.M(r.dir));
  const clusters = perCluster(keepOrder, offsets);
  for (let c = 0; c < K; c++) {
    const refM = refMaxSim(X16, D, clusters[c]!).M;
    const b = Number(offsets[c]);
    const bad = compareM(M.subarray(b, b + refM.length), refM, 1e-5);
    assert.equal(bad, null, `float16, cluster ${c}: ${bad?.message}`);
  }
});

test('ids: S24 memmap, .npy U and S, text file and none are used by the extracted text', async () => {
  const r = await base();
  await withSpec(semdedup, { embeddings: SPEC, outputDir: r.dir, whichToKeep: 'hard', epsList: EPS, device: 'cpu' });
  const keepOrder = i64(outputs.keepOrder(r.dir));
  const M = f64(outputs.M(r.dir));
  const eps = 0.05;
  const keptRows = Array.from(keepOrder).map(Number).filter((_, p) => !(M[p]! > 1 - eps));
  const files: { name: string; ids: Ids | undefined; list: string[] }[] = [];
  files.push({ name: 'S24 memmap', ids: readIds(writeIdsOnce(), { format: 'auto', dtype: 'S24', count: N }), list: ID_LIST });
  const uPath = join(ROOT, 'ids_u.npy');
  const uList = ID_LIST.map((s, i) => `ü${i}/${s}`); // non-ASCII survives in U
  writeNpy(uPath, uList, { strKind: 'U' });
  files.push({ name: '.npy U', ids: readIds(uPath, { format: 'auto', count: N }), list: uList });
  const sPath = join(ROOT, 'ids_s.npy');
  writeNpy(sPath, ID_LIST, { strKind: 'S' });
  files.push({ name: '.npy S', ids: readIds(sPath, { format: 'auto', count: N }), list: ID_LIST });
  const tPath = join(ROOT, 'ids.txt');
  const tList = ID_LIST.map((s) => `dir/${s}`);
  writeFileSync(tPath, tList.join('\n') + '\n');
  files.push({ name: 'text', ids: readIds(tPath, { format: 'auto', count: N }), list: tList });
  files.push({ name: 'none', ids: undefined, list: Array.from({ length: N }, (_, i) => String(i)) });
  for (const f of files) {
    if (f.ids) assert.equal(f.ids.length, N, f.name);
    const out = join(r.dir, `ids-${f.name.replace(/[^a-z0-9]/gi, '_')}.txt`);
    await extractPrunedData({ outputDir: r.dir, eps, output: out, ...(f.ids ? { ids: f.ids } : {}) });
    assert.equal(readFileSync(out, 'utf8'), keptRows.map((row) => `${f.list[row]}\n`).join(''), `${f.name}: extracted ids`);
  }
});

// ---------------------------------------------------------------------------------------------
// Zero-copy views.

test('zero-copy: openEmbeddings().view() maps the file without copying', () => {
  for (const spec of [SPEC, { path: EMB, dim: D } as EmbeddingsSpec]) {
    const e = openEmbeddings(spec);
    const v = e.view() as Float32Array & { copied?: boolean };
    assert.ok(v instanceof Float32Array);
    assert.equal(v.copied, false);
    assert.equal(v.length, N * D);
    const bytes = readFileSync(EMB);
    assert.ok(Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(bytes), 'view values differ from the file bytes');
    e.close();
  }
  const npyPath = join(ROOT, 'zc.npy');
  writeNpy(npyPath, X.subarray(0, 100 * D), { shape: [100, D] });
  const e = openEmbeddings({ path: npyPath });
  const v = e.view() as Float32Array & { copied?: boolean };
  assert.equal(v.copied, false);
  assert.deepEqual(Array.from(v), Array.from(X.subarray(0, 100 * D)));
  e.close();
});

test('zero-copy: values set through a writable view() are in the file after close()', () => {
  for (const format of ['memmap', 'npy'] as const) {
    const path = join(ROOT, `writable.${format}`);
    const e = createEmbeddingsFile(path, 50, D, { format });
    const v = e.view() as Float32Array & { copied?: boolean };
    assert.equal(v.copied, false);
    for (let i = 0; i < v.length; i++) v[i] = i * 0.25 - 3;
    e.close();
    const back = format === 'npy' ? f32(path) : new Float32Array(readFileSync(path).buffer.slice(0));
    assert.equal(back.length, 50 * D);
    for (let i = 0; i < back.length; i++) assert.equal(back[i], i * 0.25 - 3, `${format}: value ${i}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Step 1: getEmbeddings.

test('getEmbeddings: out-of-order batches, async model, rows normalised at their indices, ids in a paths memmap', async () => {
  const n = 300;
  const d = 16;
  const raw = new Float32Array(n * d);
  for (let i = 0; i < raw.length; i++) raw[i] = Math.sin(i * 0.37) + 0.1 * ((i * 7919) % 13);
  const names = Array.from({ length: n }, (_, i) => `img_${i}.jpg`);
  // Batches of 32 rows, yielded back to front; the last batch's indices are shuffled within it.
  const batches: Batch<Float32Array>[] = [];
  for (let b = 0; b < n; b += 32) {
    const idx = Array.from({ length: Math.min(32, n - b) }, (_, t) => b + t);
    if (b === 0) idx.reverse();
    const data = new Float32Array(idx.length * d);
    idx.forEach((row, t) => data.set(raw.subarray(row * d, (row + 1) * d), t * d));
    batches.push(b % 64 === 0 ? { data, paths: idx.map((i) => names[i]!), indices: idx } : [data, idx.map((i) => names[i]!), idx]);
  }
  batches.reverse();
  async function* loader() {
    for (const b of batches) {
      await new Promise((res) => setTimeout(res, 0));
      yield b;
    }
  }
  const model = async (data: Float32Array) => {
    await new Promise((res) => setTimeout(res, 1));
    return Float32Array.from(data, (v) => v * 3);
  };
  const embPath = join(ROOT, 'step1.f32');
  const idsPath = join(ROOT, 'step1.S24');
  const emb = createEmbeddingsFile(embPath, n, d);
  const paths = new PathsMemmap(idsPath, n, 'S24');
  const count = await getEmbeddings(model, loader(), emb, paths);
  emb.close();
  paths.close();
  assert.equal(count, n);
  const out = new Float32Array(readFileSync(embPath).buffer.slice(0));
  assert.equal(out.length, n * d);
  for (let i = 0; i < n; i++) {
    let nn = 0;
    let rr = 0;
    for (let t = 0; t < d; t++) {
      nn += out[i * d + t]! ** 2;
      rr += raw[i * d + t]! ** 2;
    }
    assert.ok(Math.abs(Math.sqrt(nn) - 1) < 1e-6, `row ${i}: norm ${Math.sqrt(nn)}`);
    const inv = 1 / Math.sqrt(rr);
    for (let t = 0; t < d; t++) assert.ok(Math.abs(out[i * d + t]! - raw[i * d + t]! * inv) < 1e-6, `row ${i} col ${t}`);
  }
  const ids = readIds(idsPath, { format: 'memmap', dtype: 'S24', count: n });
  assert.deepEqual(ids.toArray(), names);
  // The written file opens as embeddings and passes the normalisation check.
  const check = openEmbeddings({ path: embPath, dim: d });
  assert.equal(check.n, n);
  check.close();
});

test('getEmbeddings: a row written twice is an error', async () => {
  const d = 8;
  const emb = createEmbeddingsFile(join(ROOT, 'twice.f32'), 4, d);
  const one = (rows: number[]) => ({ data: new Float32Array(rows.length * d).fill(1), paths: rows.map((r) => `r${r}`), indices: rows });
  await assert.rejects(
    getEmbeddings((x: Float32Array) => x, [one([0, 1]), one([2, 1])], emb),
    (e: unknown) => e instanceof InputError && /row 1 .*twice/.test((e as Error).message),
  );
  emb.close();
  assert.ok(existsSync(join(ROOT, 'twice.f32')));
});
