// The exact re-checks a run records (manifest's train, cluster and dedup records; summary.json's
// `checks`): the filter of each distance pass, the rows and members it left to a float32 check and a
// float64 re-score, the copies decided without the kernel and M's precision. Each count is checked
// against the addon's own stats for the same job, and against the same run on another thread count.
// Everything runs on the CPU, whose filters SEMDEDUP_ISA chooses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, rng, tmpFolder } from './helpers.js';
import { writeNpy, readNpy } from '../src/io/npy.js';
import { cpuFlags, loadNative } from '../src/native/index.js';
import { thresholdsOf } from '../src/decision.js';

const N = 4000;
const D = 64;
const K = 100;
const EPS = [0.01, 0.05];
/** Training samples K × MAX_POINTS = 2,000 of the N rows: the assignment searches the others. */
const MAX_POINTS = 20;


/**
 * Unit rows in chains (each row a step of random length from the previous one, restarting now and
 * then), in small clusters, so that a member's largest similarity is usually to one chain
 * neighbour, clearly (the integer filter decides it), or to two about equally (several candidates:
 * checked by their float32 products); with planted exact copies of the previous row (decided
 * without the kernel) and near copies (float32 near ties: re-scored in float64).
 */
function dataset(seed: number): Float32Array {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const X = new Float32Array(N * D);
  const put = (i: number, v: number[]) => {
    const norm = Math.hypot(...v);
    for (let j = 0; j < D; j++) X[i * D + j] = v[j]! / norm;
  };
  const prev = (i: number, noise: number) => Array.from(X.subarray((i - 1) * D, i * D), (x) => x + noise * gauss());
  for (let i = 0; i < N; i++) {
    const kind = r();
    if (i === 0 || kind < 0.01) put(i, Array.from({ length: D }, gauss));
    else if (kind < 0.07) X.copyWithin(i * D, (i - 1) * D, i * D);
    else if (kind < 0.13) put(i, prev(i, 1e-4 / Math.sqrt(D)));
    else put(i, prev(i, (0.2 + r()) / Math.sqrt(D)));
  }
  return X;
}

interface Records {
  train: Record<string, unknown>;
  cluster: Record<string, unknown>;
  dedup: Record<string, unknown>;
  summary: { checks: { cluster: Record<string, unknown>; dedup: Record<string, unknown> } };
}

function runWith(dir: string, input: string, out: string, isa: string, threads: number): Records {
  const r = spawnSync(process.execPath, [CLI, 'run', input, '-k', String(K), '--eps-list', EPS.join(','), '-o', out, '--threads', String(threads), '--device', 'cpu', '--set', `max_points_per_centroid=${MAX_POINTS}`, '-q'], {
    cwd: dir, encoding: 'utf8', env: { ...process.env, SEMDEDUP_ISA: isa }, timeout: 300_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(readFileSync(join(out, 'semdedup', 'manifest.json'), 'utf8')) as { steps: Record<string, { stats: Record<string, unknown> }> };
  return {
    train: m.steps.train!.stats, cluster: m.steps.cluster!.stats, dedup: m.steps.dedup!.stats,
    summary: JSON.parse(readFileSync(join(out, 'semdedup', 'summary.json'), 'utf8')) as Records['summary'],
  };
}

/** Every count of a checks object is a non-negative integer. */
function assertCounts(what: string, o: Record<string, unknown>, keys: string[]): void {
  for (const key of keys) {
    const v = o[key];
    const values = typeof v === 'object' && v !== null ? Object.values(v as Record<string, unknown>) : [v];
    assert.ok(values.length > 0, `${what}.${key} is recorded`);
    for (const x of values) assert.ok(Number.isSafeInteger(x) && (x as number) >= 0, `${what}.${key}: ${JSON.stringify(v)} is not a non-negative integer`);
  }
}

const CLUSTER_COUNTS = ['iterations', 'searchedRows', 'prunedRows', 'filterCheckedRows', 'rescoredRows'];
const DEDUP_COUNTS = ['members', 'copies', 'filterChecked', 'rechecked', 'rescanned'];

/** The addon's own stats for the jobs of the run in `out`, with the filter `isa`. */
async function addonStats(out: string, input: string, isa: string) {
  const addon = loadNative();
  const before = process.env.SEMDEDUP_ISA;
  process.env.SEMDEDUP_ISA = isa;
  const emb = new addon.Embeddings({ path: input, offset: 128, n: N, d: D, dtype: 'float32', writable: false });
  const engine = new addon.Engine({ device: 'cpu' });
  try {
    const header = readFileSync(input).subarray(0, 128);
    assert.equal(header.readUInt16LE(8) + 10, 128, 'the test file has a 128-byte .npy header');
    const train = await addon.trainKmeans({ emb, k: K, maxPointsPerCentroid: MAX_POINTS, threads: 2, engine, keepAssignment: true });
    const centroids = readNpy(join(out, 'kmeans_centroids.npy')).data as Float32Array;
    assert.deepEqual(Buffer.from(train.centroids.buffer), Buffer.from(centroids.buffer), 'the run trained the centroids the addon trains');
    // The assignment of the rows training did not assign (the run's training rows keep theirs).
    const nearest = new BigInt64Array(N);
    const dist = new Float32Array(N);
    const skip = new Uint8Array(N);
    const kept = train.assigned!;
    assert.ok(kept.rows.length > 0 && kept.rows.length < N, `training kept the assignment of its ${kept.rows.length} rows`);
    kept.rows.forEach((r, t) => {
      nearest[Number(r)] = kept.nearest[t]!;
      dist[Number(r)] = kept.dist[t]!;
      skip[Number(r)] = 1;
    });
    const assign = await addon.assignNearest({ emb, centroids, k: K, innerProduct: false, nearest, dist, skip, threads: 2, engine });
    assert.deepEqual(Buffer.from(nearest.buffer), readFileSync(join(out, 'nearest_cent.npy')).subarray(-N * 8), 'the assignment the run wrote');
    const keepOrder = readNpy(join(out, 'semdedup', 'keep_order.npy')).data as BigInt64Array;
    const offsets = readNpy(join(out, 'semdedup', 'cluster_offsets.npy')).data as BigInt64Array;
    const M = new Float64Array(N);
    const arg = new BigInt64Array(N);
    const maxsim = await addon.maxSimilarity({ emb, order: keepOrder, offsets, M, arg, thresholds: thresholdsOf(EPS), threads: 2, engine });
    return { train, assign, maxsim };
  } finally {
    emb.close();
    if (before === undefined) delete process.env.SEMDEDUP_ISA;
    else process.env.SEMDEDUP_ISA = before;
  }
}

async function checkRun(isa: 'fp32' | 'avx2-int8'): Promise<void> {
  const dir = tmpFolder(`checks-${isa}`);
  try {
    const input = join(dir, 'x.npy');
    writeNpy(input, dataset(11), { shape: [N, D] });
    const one = runWith(dir, input, join(dir, 'one'), isa, 1);
    const two = runWith(dir, input, join(dir, 'two'), isa, 2);
    const { cluster, dedup } = one.summary.checks;

    // Recorded, as non-negative integers, under the same names in the manifest and summary.json.
    assertCounts('summary.checks.cluster', cluster, CLUSTER_COUNTS);
    assertCounts('summary.checks.dedup', dedup, DEDUP_COUNTS);
    for (const key of CLUSTER_COUNTS) assert.deepEqual(cluster[key], one.cluster[key], `cluster.${key}: summary.json and the manifest`);
    for (const key of [...DEDUP_COUNTS, 'filter', 'mPrecision']) assert.deepEqual(dedup[key], one.dedup[key], `dedup.${key}: summary.json and the manifest`);
    assert.deepEqual(cluster.filter, { train: isa, assign: isa });
    assert.equal(dedup.filter, isa);
    assert.equal(one.train.filter, isa);
    assert.equal(one.train.filterCheckedRows, (cluster.filterCheckedRows as { train: number }).train);
    assert.deepEqual(dedup.mPrecision, { exactAtOrAbove: -1, boundBelow: 0 }, 'every M is the float64 value');
    assert.equal(dedup.members, N);

    // The same counts on another thread count.
    assert.deepEqual(two.summary.checks, one.summary.checks, 'the checks of 1 and 2 threads');

    // The addon's stats for the same jobs.
    const a = await addonStats(join(dir, 'one'), input, isa);
    assert.equal(a.train.filter, isa);
    assert.deepEqual(
      { iterations: cluster.iterations, searchedRows: cluster.searchedRows, prunedRows: cluster.prunedRows, filterCheckedRows: one.train.filterCheckedRows, rescoredRows: one.train.rescoredRows },
      { iterations: a.train.iterations, searchedRows: a.train.searchedRows, prunedRows: a.train.prunedRows, filterCheckedRows: a.train.filterCheckedRows, rescoredRows: a.train.rescoredRows },
      'training: the record and the addon',
    );
    assert.equal(a.assign.filter, isa);
    assert.deepEqual(cluster.filterCheckedRows, { train: a.train.filterCheckedRows, assign: a.assign.filterCheckedRows }, 'rows checked after the filter');
    assert.deepEqual(cluster.rescoredRows, { train: a.train.rescoredRows, assign: a.assign.rescoredRows }, 'rows re-scored in float64');
    assert.equal(a.maxsim.filter, isa);
    for (const key of ['members', 'copies', 'filterChecked', 'rechecked', 'rescanned'] as const) assert.equal(dedup[key], a.maxsim[key], `dedup.${key}: the record and the addon`);

    // With the planted structure, each pass left work to its exact checks.
    const f = cluster.filterCheckedRows as { train: number; assign: number };
    assert.ok((dedup.copies as number) > 0, `exact copies decided without the kernel (${dedup.copies})`);
    assert.ok((dedup.rechecked as number) > 0, `members re-scored in float64 (${dedup.rechecked})`);
    if (isa === 'avx2-int8') {
      assert.ok(f.train > 0 && f.assign > 0, `rows checked in float32 after the integer filter: ${JSON.stringify(f)}`);
      assert.ok((dedup.filterChecked as number) > 0, `members checked in float32 after the integer filter (${dedup.filterChecked})`);
    } else {
      assert.deepEqual(f, { train: 0, assign: 0 }, 'the fp32 path has no integer filter to check after');
      assert.equal(dedup.filterChecked, 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the fp32 filter forced: the manifest and summary.json record the re-checks, equal to the addon\'s stats and the same on 1 and 2 threads', () => checkRun('fp32'));

// The integer filter needs AVX2.
const hasAvx2 = cpuFlags().has('avx2');

test('the avx2-int8 filter forced: rows and members checked after the integer filter are recorded (> 0 on planted near ties), equal to the addon\'s stats',
  { skip: hasAvx2 ? false : 'this CPU has no AVX2 (the integer filter cannot run)' }, () => checkRun('avx2-int8'));
