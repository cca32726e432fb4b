// The native calls are asynchronous and well-behaved: the event loop runs during them, progress
// is sane, cancellation rejects with ERR_CANCELLED and a rerun resumes, concurrent runs agree
// with sequential ones, native errors are typed, and the loader is predictable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

import { parseConfigObject } from '../src/config.js';
import { createEmbeddingsFile, openEmbeddings } from '../src/embeddings.js';
import { SemDedupError } from '../src/errors.js';
import { blasCoreFor, engineFor, loadNative } from '../src/native/index.js';
import { runAll, runCluster, runDedup, runSort } from '../src/pipeline.js';
import { computeCentroids } from '../src/steps/cluster.js';
import { semdedup, type DedupResult } from '../src/steps/dedup.js';
import type { Progress } from '../src/steps/common.js';
import { SynthDataset, type SynthOptions } from '../tools/synth.js';
import { tmpFolder, withSpec } from './helpers.js';


function tmp(): string {
  return tmpFolder('async');
}

/** Writes a generated dataset as a raw float32 memmap; returns its path. */
function writeDataset(dir: string, opts: Partial<SynthOptions>): { file: string; X: Float32Array; n: number; dim: number } {
  const ds = new SynthDataset(opts);
  const file = path.join(dir, 'emb.f32');
  const e = createEmbeddingsFile(file, ds.n, ds.dim, { format: 'memmap' });
  const X = ds.generate();
  (e.view() as Float32Array).set(X);
  e.close();
  return { file, X, n: ds.n, dim: ds.dim };
}

function config(file: string, dim: number, out: string, k: number, extra: Record<string, unknown> = {}) {
  return parseConfigObject(
    { embeddings: file, dim, output_dir: out, k, niter: 10, seed: 1234, spherical: true, eps_list: [0.01, 0.05], ...extra },
    '<test>',
  );
}

function dot(X: Float32Array, d: number, a: number, b: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += X[a * d + t]! * X[b * d + t]!;
  return s;
}

// ---------------------------------------------------------------------------------------------
// The event loop keeps running.

test('async: the event loop keeps running during a long maxSimilarity call (one cluster of 6000 × 256)', async () => {
  const dir = tmp();
  const n = 6000;
  const d = 256;
  const { file, X } = writeDataset(dir, { n, dim: d, clusters: 1, seed: 2 });
  const emb = openEmbeddings({ path: file, dim: d });
  const addon = loadNative();
  const order = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
  const offsets = BigInt64Array.from([0n, BigInt(n)]);
  const M = new Float64Array(n);
  const arg = new BigInt64Array(n);
  const progress: [number, number][] = [];
  let ticks = 0;
  const iv = setInterval(() => ticks++, 5);
  const t0 = performance.now();
  let settled = false;
  try {
    const p = addon.maxSimilarity({
      emb: emb.native, order, offsets, M, arg, thresholds: [0.99, 0.95], threads: 0, engine: engineFor('cpu'),
      onProgress: (done, total) => progress.push([done, total]),
    });
    assert.ok(p instanceof Promise, 'maxSimilarity returns a promise');
    void p.then(() => (settled = true));
    assert.equal(settled, false, 'the call returns before the work is done');
    const st = await p;
    assert.equal(st.members, n);
    assert.equal(st.clusters, 1);
  } finally {
    clearInterval(iv);
    emb.close();
  }
  const ms = performance.now() - t0;
  // A blocked loop gets at most one tick; a free one about ms / 5.
  assert.ok(ticks >= 5 && ticks >= (0.3 * ms) / 5, `${ticks} timer ticks during ${ms.toFixed(0)} ms of maxSimilarity`);
  // Progress: done ≤ total, never going back, the last one complete.
  assert.ok(progress.length >= 1, 'progress was reported');
  let last = 0;
  for (const [done, total] of progress) {
    assert.ok(done <= total, `progress ${done} > ${total}`);
    assert.ok(done >= last, `progress went back from ${last} to ${done}`);
    last = done;
  }
  const [ld, lt] = progress[progress.length - 1]!;
  assert.equal(ld, lt, 'the last progress report is complete');
  // And the values are right (spot check against float64).
  for (const j of [1, 2, 17, 999, 3000, 5999]) {
    let best = 0;
    for (let i = 0; i < j; i++) best = Math.max(best, dot(X, d, i, j));
    assert.ok(Math.abs(M[j]! - best) <= 1e-5, `M[${j}] = ${M[j]}, float64 ${best}`);
  }
  assert.equal(M[0], 0);
});

test('async: progress through the API: done <= total, each stage ends complete', async () => {
  const dir = tmp();
  const { file, dim } = writeDataset(dir, { n: 3000, dim: 32, clusters: 8, seed: 4 });
  const events: Progress[] = [];
  const cfg = config(file, dim, path.join(dir, 'out'), 8);
  await runAll(cfg, { onProgress: (p) => events.push(p) });
  assert.ok(events.length > 0);
  const byStage = new Map<string, Progress[]>();
  for (const e of events) {
    assert.ok(Number.isFinite(e.done) && Number.isFinite(e.total), JSON.stringify(e));
    assert.ok(e.done >= 0 && e.done <= e.total, `${e.stage}: done ${e.done} > total ${e.total}`);
    byStage.set(e.stage, [...(byStage.get(e.stage) ?? []), e]);
  }
  for (const s of ['cluster:train', 'cluster:assign', 'dedup']) assert.ok(byStage.has(s), `stage ${s} reports progress (got ${[...byStage.keys()].join(', ')})`);
  for (const [stage, list] of byStage) {
    const lastE = list[list.length - 1]!;
    assert.equal(lastE.done, lastE.total, `the last '${stage}' report is complete: ${JSON.stringify(lastE)}`);
    const totals = new Set(list.map((e) => e.total));
    assert.equal(totals.size, 1, `'${stage}' keeps one total: ${[...totals].join(', ')}`);
    for (let i = 1; i < list.length; i++) assert.ok(list[i]!.done >= list[i - 1]!.done, `'${stage}' progress went back: ${list[i - 1]!.done} -> ${list[i]!.done}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Cancellation and resume.

function partFiles(out: string): string[] {
  const dir = path.join(out, 'semdedup', 'parts');
  if (!existsSync(dir)) return [];
  const res: string[] = [];
  for (const sub of readdirSync(dir)) {
    const p = path.join(dir, sub);
    try {
      for (const f of readdirSync(p)) if (/^M_.*\.npy$/.test(f)) res.push(f);
    } catch {
      // not a folder
    }
  }
  return res;
}

test('async: aborting dedup rejects with ERR_CANCELLED, and a rerun resumes to the same bytes', async () => {
  const dir = tmp();
  const k = 640; // enough clusters for several resumable parts (at least 64 clusters per worker each)
  const { file, dim } = writeDataset(dir, { n: 12000, dim: 48, clusters: k, seed: 9 });
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  const cfgA = config(file, dim, a, k);
  await runCluster(cfgA);
  await runSort(cfgA);
  cpSync(a, b, { recursive: true });
  const cfgB = config(file, dim, b, k);

  // Interrupted in a: abort once a first part is saved.
  const ac = new AbortController();
  let abortedAt = -1;
  let err: unknown;
  try {
    await runDedup(cfgA, {
      signal: ac.signal,
      onProgress: (p) => {
        if (!ac.signal.aborted && p.stage === 'dedup' && partFiles(a).length >= 1) {
          abortedAt = p.done;
          ac.abort();
        }
      },
    });
  } catch (e) {
    err = e;
  }
  assert.ok(ac.signal.aborted, 'the abort happened (after the first part was saved)');
  assert.ok(err instanceof SemDedupError, `rejects with a SemDedupError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_CANCELLED');
  assert.ok(abortedAt < 12000, 'aborted before the end');
  const saved = partFiles(a).length;
  assert.ok(saved >= 1, 'completed parts are kept');
  for (const f of ['M.npy', 'keep_order.npy', 'M_row.npy'])
    assert.ok(!existsSync(path.join(a, 'semdedup', f)), `${f} is not written by a cancelled run`);

  // Resume in a, uninterrupted in b.
  const ra: DedupResult = await runDedup(cfgA);
  assert.ok(ra.resumedParts > 0, `the rerun resumed ${ra.resumedParts} parts (${saved} were saved)`);
  assert.ok(ra.resumedParts >= saved, `all ${saved} saved parts are reused, got ${ra.resumedParts}`);
  const rb = await runDedup(cfgB);
  assert.equal(rb.resumedParts, 0);
  for (const f of ['M.npy', 'M_row.npy', 'keep_order.npy'])
    assert.deepEqual(readFileSync(path.join(a, 'semdedup', f)), readFileSync(path.join(b, 'semdedup', f)), `${f}: resumed and uninterrupted runs give the same bytes`);
  assert.deepEqual(ra.summary, rb.summary);
  assert.deepEqual(partFiles(a), [], 'parts are removed after completion');
  // The counts of the exact checks: each resumed part keeps its own, so the dedup record and
  // summary.json's checks equal the uninterrupted run's.
  const counts = (dir: string) => {
    const m = JSON.parse(readFileSync(path.join(dir, 'semdedup', 'manifest.json'), 'utf8')) as { steps: { dedup: { stats: Record<string, unknown> } } };
    const st = m.steps.dedup.stats;
    return Object.fromEntries(['members', 'clusters', 'usefulFlops', 'rechecked', 'rescanned', 'filter', 'filterChecked', 'copies', 'mPrecision'].map((key) => [key, st[key]]));
  };
  assert.deepEqual(counts(a), counts(b));
  assert.equal(counts(a).members, 12000);
  assert.equal(counts(a).clusters, k);
  const checks = (dir: string) => (JSON.parse(readFileSync(path.join(dir, 'semdedup', 'summary.json'), 'utf8')) as { checks: unknown }).checks;
  assert.deepEqual(checks(a), checks(b));
});

test('async: an AbortSignal aborted before a step starts rejects at once; k-means too', async () => {
  const dir = tmp();
  const { file, dim } = writeDataset(dir, { n: 2000, dim: 16, clusters: 4, seed: 3 });
  const cfg = config(file, dim, path.join(dir, 'out'), 4);
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(runCluster(cfg, { signal: ac.signal }), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CANCELLED');
  assert.ok(!existsSync(path.join(dir, 'out', 'kmeans_centroids.npy')));
  // Abort during k-means training. Training stops early once no assignment changes, so the data
  // must keep Lloyd busy for many iterations: one isotropic blob split into 256 clusters.
  mkdirSync(path.join(dir, 'blob'));
  const blob = writeDataset(path.join(dir, 'blob'), { n: 100000, dim: 64, clusters: 1, seed: 5 });
  const ac2 = new AbortController();
  await assert.rejects(
    withSpec(computeCentroids, {
      embeddings: { path: blob.file, dim: blob.dim },
      outputDir: path.join(dir, 'out2'),
      k: 256,
      niter: 200,
      spherical: true,
      signal: ac2.signal,
      onProgress: (p) => {
        if (p.stage === 'cluster:train') ac2.abort();
      },
    }),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CANCELLED',
  );
  for (const f of ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy']) assert.ok(!existsSync(path.join(dir, 'out2', f)), `${f} not written`);
});

test('async: aborting while rows are normalised (normalize always) leaves no partial copy', async () => {
  const dir = tmp();
  const ds = new SynthDataset({ n: 40000, dim: 16, clusters: 4, seed: 3 });
  const X = ds.generate();
  for (let i = 0; i < X.length; i++) X[i] = X[i]! * 2; // norm 2: needs normalising
  const file = path.join(dir, 'emb.f32');
  writeFileSync(file, Buffer.from(X.buffer));
  const out = path.join(dir, 'out');
  const ac = new AbortController();
  await assert.rejects(
    withSpec(computeCentroids, {
      embeddings: { path: file, dim: 16 },
      outputDir: out,
      k: 4,
      normalize: 'always',
      signal: ac.signal,
      onProgress: (p) => {
        if (p.stage === 'normalize') ac.abort();
      },
    }),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CANCELLED',
  );
  const left = existsSync(path.join(out, 'semdedup')) ? readdirSync(path.join(out, 'semdedup')) : [];
  assert.deepEqual(left.filter((f) => /partial|\.tmp-/.test(f)), [], `a cancelled normalisation leaves no half-written copy (found ${left.join(', ')})`);
  // A rerun completes and uses a full copy.
  const r = await withSpec(computeCentroids, { embeddings: { path: file, dim: 16 }, outputDir: out, k: 4, normalize: 'always' });
  assert.equal(r.nearest.length, 40000);
});

// ---------------------------------------------------------------------------------------------
// Concurrency.

test('async: two runs at once on different folders equal sequential runs', async () => {
  const dir = tmp();
  const d1 = writeDataset(path.join(dir), { n: 3000, dim: 32, clusters: 8, seed: 21 });
  const dir2 = tmp();
  const d2 = writeDataset(dir2, { n: 2500, dim: 24, clusters: 6, seed: 22 });
  const cfg = (d: typeof d1, out: string, k: number) => config(d.file, d.dim, out, k, { eps_list: [0.01, 0.05, 0.1] });
  const [c1, c2] = await Promise.all([runAll(cfg(d1, path.join(dir, 'par1'), 8)), runAll(cfg(d2, path.join(dir, 'par2'), 6))]);
  const s1 = await runAll(cfg(d1, path.join(dir, 'seq1'), 8));
  const s2 = await runAll(cfg(d2, path.join(dir, 'seq2'), 6));
  for (const [par, seq, name] of [[c1, s1, 'par1'], [c2, s2, 'par2']] as const) {
    assert.deepEqual(par.cluster.centroids, seq.cluster.centroids, `${name}: centroids`);
    assert.deepEqual(par.cluster.nearest, seq.cluster.nearest, `${name}: nearest`);
    assert.deepEqual(par.sort.order, seq.sort.order, `${name}: order`);
    assert.deepEqual(par.dedup.M, seq.dedup.M, `${name}: M`);
    assert.deepEqual(par.dedup.summary, seq.dedup.summary, `${name}: summary`);
    assert.deepEqual(par.extract.map((x) => x.keptRows), seq.extract.map((x) => x.keptRows), `${name}: kept rows`);
  }
  for (const [p, s] of [['par1', 'seq1'], ['par2', 'seq2']])
    assert.deepEqual(readFileSync(path.join(dir, p, 'semdedup', 'M.npy')), readFileSync(path.join(dir, s, 'semdedup', 'M.npy')), `${p}: M.npy bytes`);
  // Two native calls at once on the same mapping.
  const emb = openEmbeddings({ path: d1.file, dim: d1.dim });
  try {
    const addon = loadNative();
    const order = s1.dedup.keepOrder;
    const offsets = s1.dedup.offsets;
    const Ms = [new Float64Array(order.length), new Float64Array(order.length)];
    const args = [new BigInt64Array(order.length), new BigInt64Array(order.length)];
    await Promise.all(Ms.map((M, i) => addon.maxSimilarity({ emb: emb.native, order, offsets, M, arg: args[i]!, thresholds: [0.99], threads: 0, engine: engineFor('cpu') })));
    assert.deepEqual(Ms[0], s1.dedup.M);
    assert.deepEqual(Ms[1], s1.dedup.M);
  } finally {
    emb.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Typed native errors.

test('async: a too-short embeddings file gives a SemDedupError with code ERR_INPUT', async () => {
  const dir = tmp();
  const file = path.join(dir, 'short.f32');
  writeFileSync(file, Buffer.alloc(100));
  const addon = loadNative();
  // The native mapping itself refuses it, with a SemDedupError of code ERR_INPUT (thrown by the addon).
  let raw: unknown;
  try {
    new addon.Embeddings({ path: file, offset: 0, n: 2000, d: 16, dtype: 'float32', writable: false });
  } catch (e) {
    raw = e;
  }
  assert.ok(raw instanceof SemDedupError, 'the native constructor throws a SemDedupError');
  assert.equal(raw.code, 'ERR_INPUT');
  assert.ok(raw.reason === 'io' || raw.reason === 'format', `the engine's kind of failure is kept: ${raw.reason}`);
  assert.ok(raw.message.includes(file), raw.message);
  // Through the API.
  await assert.rejects(
    withSpec(computeCentroids, { embeddings: { path: file, dim: 16, count: 2000 }, outputDir: path.join(dir, 'out'), k: 4 }),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_INPUT' && e.message.includes(file),
  );
  assert.throws(() => openEmbeddings({ path: file, dim: 16, count: 2000 }), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_INPUT');
  // A mapping that is smaller than the rows asked for through the native API.
  await assert.rejects(
    withSpec(semdedup, { embeddings: { path: file, dim: 16 }, outputDir: path.join(dir, 'out'), epsList: [0.05] }),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_INPUT',
  );
});

test('async: native argument errors are typed (rows out of range, closed mapping, bad lengths)', async () => {
  const dir = tmp();
  const { file, dim } = writeDataset(dir, { n: 100, dim: 8, clusters: 2, seed: 1 });
  const addon = loadNative();
  const emb = openEmbeddings({ path: file, dim });
  // Argument checks may throw at the call or reject the promise; either way the error is typed.
  const check = async (call: () => Promise<unknown>, what: string) => {
    let err: unknown;
    try {
      await call();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof SemDedupError, `${what}: rejects with a SemDedupError (${String(err)})`);
    assert.equal(err.code, 'ERR_INPUT', `${what}: a user-facing code, got ${err.code}`);
    assert.equal(err.reason, 'invalid-argument', `${what}: reason`);
  };
  const M = new Float64Array(2);
  const A = new BigInt64Array(2);
  const engine = engineFor('cpu');
  const ms = (order: BigInt64Array, offsets: BigInt64Array) => () => addon.maxSimilarity({ emb: emb.native, order, offsets, M, arg: A, thresholds: [0.9], threads: 0, engine });
  await check(ms(BigInt64Array.from([0n, 100n]), BigInt64Array.from([0n, 2n])), 'row out of range');
  await check(ms(BigInt64Array.from([0n, 1n]), BigInt64Array.from([0n, 3n])), 'offsets past the end');
  await check(() => addon.maxSimilarity({ emb: emb.native, order: BigInt64Array.from([0n, 1n]), offsets: new BigInt64Array([0n, 2n]), M: new Float32Array(2) as unknown as Float64Array, arg: A }), 'M of the wrong element type');
  // The calls that once reached the CLI as internal errors: ranking, the keep order, blob offsets.
  const nearest = BigInt64Array.from([0n, 1n]);
  await check(() => addon.rankClusters({ nearest, key: new Float32Array(3), k: 2, keepHard: true, order: new BigInt64Array(2), offsets: new BigInt64Array(3) }), 'rankClusters: bad lengths');
  await check(() => addon.keepOrder({ order: nearest, offsets: BigInt64Array.from([0n, 5n]), which: 'hard', seed: 0, keepOrder: new BigInt64Array(2), keepIndex: new BigInt64Array(2) }), 'keepOrder: bad offsets');
  await check(() => addon.keepOrder({ order: nearest, offsets: BigInt64Array.from([0n, 2n]), which: 'sideways' as 'hard', seed: 0, keepOrder: new BigInt64Array(2), keepIndex: new BigInt64Array(2) }), 'keepOrder: bad which');
  await check(() => addon.blobOffsets({ blob: 'not bytes' as unknown as Uint8Array }), 'blobOffsets: not bytes');
  // Every function takes one options object: anything else is a typed argument error.
  for (const name of ['trainKmeans', 'assignNearest', 'cosineToCentroid', 'rankClusters', 'splitKept', 'blobOffsets', 'writeIdsText', 'maxSimLayout',
    'maxSimilarityBlock', 'maxSimilarity', 'scanEmbeddings', 'normalizeRows', 'keepOrder', 'measureSgemm', 'recheckMargin', 'recheckThresholds',
    'maxSimilarityToReference', 'exactDuplicates', 'tryLockFd'] as const)
    await check(async () => (addon[name] as (...a: unknown[]) => unknown)(1, 2, 3), `${name}(positional arguments)`);
  await check(async () => addon.maxSimilarity(emb.native as unknown as Parameters<typeof addon.maxSimilarity>[0]), 'maxSimilarity(emb, ...)');
  await check(async () => new addon.Engine({ device: 'tpu' as 'cpu' }), 'Engine: an unknown device');
  emb.close();
  await check(ms(BigInt64Array.from([0n, 1n]), BigInt64Array.from([0n, 2n])), 'closed mapping');
});

// ---------------------------------------------------------------------------------------------
// The loader.

test('async: loadNative() returns the same object twice', () => {
  const a = loadNative();
  const b = loadNative();
  assert.equal(a, b);
  assert.equal(typeof a.maxSimilarity, 'function');
  assert.equal(typeof a.info, 'function');
});

test('async: blasCoreFor() maps CPU flag sets to OpenBLAS kernels', () => {
  const f = (...x: string[]) => new Set(x);
  assert.equal(blasCoreFor(f('avx512f', 'avx512bw', 'avx512vl', 'avx512dq')), 'SkylakeX');
  assert.equal(blasCoreFor(f('avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_bf16')), 'Cooperlake');
  assert.equal(blasCoreFor(f('avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx512_bf16', 'avx2', 'fma', 'amx_tile')), 'Cooperlake');
  assert.equal(blasCoreFor(f('avx2', 'fma')), 'Haswell');
  assert.equal(blasCoreFor(f('avx2', 'fma', 'avx512f')), 'Haswell', 'partial AVX-512 is not SkylakeX');
  assert.equal(blasCoreFor(f('avx2')), undefined, 'avx2 without fma');
  assert.equal(blasCoreFor(f()), undefined);
  assert.equal(blasCoreFor(f('sse4_2', 'avx')), undefined);
});
