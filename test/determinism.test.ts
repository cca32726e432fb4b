// The same bytes on every machine (docs/algorithm.md, "Numerical contract"): the whole pipeline,
// k-means included, under OpenBLAS's Haswell, Sandybridge and Nehalem kernels (whose float32
// products round differently) and 1 and 2 threads; a planned run whose tasks run under different
// kernels, as the nodes of a SLURM cluster would; and nearest_cent, dist_to_cent and the kept ids
// against an independent float64 oracle of the definitions, with planted ties and near ties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { readNpy, writeNpy } from '../src/io/npy.js';
import { SynthDataset, type SynthOptions } from '../tools/synth.js';
import { CLI, listFiles, tmpFolder } from './helpers.js';
import { writeConfig } from './plan-helpers.js';
import { dot64Lanes, refAssignExact, refDecisions, refExtract, refMaxSim, refMaxSimExact, refRank } from './reference.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

/** The OpenBLAS kernels this CPU can run, of the three the contract names. */
function kernels(): string[] {
  let flags = new Set<string>();
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = new Set((line ?? '').split(':')[1]?.trim().split(/\s+/) ?? []);
  } catch {
    // not Linux: OpenBLAS's own choice only
  }
  const out: string[] = [];
  if (flags.has('avx2') && flags.has('fma')) out.push('Haswell');
  if (flags.has('avx')) out.push('Sandybridge');
  if (flags.has('sse4_2') || flags.has('ssse3')) out.push('Nehalem');
  return out;
}
const KERNELS = kernels();

/** `semdedup ARGS` with OPENBLAS_CORETYPE set (the user's choice of kernel). */
function cli(args: string[], cwd: string, coretype: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 300_000, env: { ...process.env, OPENBLAS_CORETYPE: coretype } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}


// Run records (timestamps, timings, the lock's holder) and the planned run's own folder differ by
// nature; every other file, M.npy and M_row.npy included, is compared byte for byte.
const RECORDS = new Set([join('semdedup', 'manifest.json'), join('semdedup', 'summary.json'), join('semdedup', 'lock')]);

/** Every output of `b` equals `a`'s byte for byte. Returns the names compared. */
function assertSameBytes(a: string, b: string, what: string): string[] {
  const fa = listFiles(a).filter((f) => !RECORDS.has(f));
  const fb = listFiles(b).filter((f) => !RECORDS.has(f) && !f.startsWith(join('semdedup', 'plan')));
  assert.deepEqual(fb, fa, `${what}: the same set of files`);
  for (const f of fa) assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${what}: ${f} differs`);
  for (const must of ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy', join('semdedup', 'cluster_order.npy'), join('semdedup', 'keep_order.npy'),
    join('semdedup', 'M.npy'), join('semdedup', 'M_row.npy'), 'kept_eps0.05.txt'])
    assert.ok(fa.includes(must), `${must} among the files compared byte for byte`);
  return fa;
}

// Two datasets of 20,000 rows: planted clusters (spherical k-means, cosine keys), and a set shaped
// like real text embeddings (384 values, Zipf-like cluster sizes, looser clusters, 30% duplicates
// of which half exact copies at other row positions; L2 k-means with step 3's cosine key).
const SETS: { name: string; synth: Partial<SynthOptions>; cfg: Record<string, unknown> }[] = [
  { name: 'planted', synth: { n: 20_000, dim: 256, clusters: 100, seed: 21 }, cfg: { k: 100, spherical: true, which_to_keep: 'hard' } },
  {
    name: 'text-like',
    synth: { n: 20_000, dim: 384, clusters: 60, seed: 22, sizeDistribution: 'heavy', dupFraction: 0.3, exactFraction: 0.5, spread: 1.1, nearCos: [0.97, 0.999] },
    cfg: { k: 50, spherical: false, sim_metric: 'cosine', which_to_keep: 'random' },
  },
];

function writeSet(dir: string, set: (typeof SETS)[number]): { emb: string } {
  const ds = new SynthDataset(set.synth);
  const X = ds.generate();
  const emb = join(dir, `${set.name}.npy`);
  writeNpy(emb, X, { shape: [ds.n, ds.dim] });
  return { emb };
}

// ---------------------------------------------------------------------------------------------

test('same bytes under OpenBLAS kernels Haswell, Sandybridge and Nehalem x 1 and 2 threads (planted and text-like data)', (t) => {
  assert.ok(KERNELS.length >= 2, `this CPU runs ${KERNELS.length} of the kernels`);
  const dir = tmpFolder('kernels');
  try {
    for (const set of SETS) {
      const { emb } = writeSet(dir, set);
      let first: string | undefined;
      let compared = 0;
      for (const kernel of KERNELS) {
        const info = JSON.parse(ok(cli(['info', '--json'], dir, kernel), 'info')) as { blasCore: string };
        assert.equal(info.blasCore, kernel, `OPENBLAS_CORETYPE=${kernel} selects that kernel`);
        for (const threads of [1, 2]) {
          const out = join(dir, `${set.name}-${kernel}-${threads}`);
          const cfg = writeConfig(dir, `${set.name}-${kernel}-${threads}.yaml`, { embeddings: emb, output_dir: out, niter: 20, seed: 5, eps_list: [0.01, 0.05, 0.1], threads, ...set.cfg });
          ok(cli(['run', '-c', cfg, '-q'], dir, kernel), `${set.name} ${kernel} ${threads}`);
          if (!first) first = out;
          else compared = assertSameBytes(first, out, `${set.name}: ${kernel} with ${threads} threads against the first run`).length;
        }
      }
      const manifest = JSON.parse(readFileSync(join(first!, 'semdedup', 'manifest.json'), 'utf8')) as { steps: Record<string, { stats?: Record<string, unknown> }> };
      const info = manifest.steps.cluster?.stats ?? {};
      t.diagnostic(`${set.name}: ${compared} files byte-identical over ${KERNELS.join(', ')} x 1, 2 threads; k-means ${String(info.iterations)} iterations, re-scored rows ${JSON.stringify(info.rescoredRows)}`);
      assert.ok(typeof info.iterations === 'number' && info.iterations > 0 && info.iterations <= 20, 'the manifest records the iterations run');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a planned run whose tasks run under different OpenBLAS kernels gives the single-process bytes', () => {
  assert.ok(KERNELS.length >= 2, `this CPU runs ${KERNELS.length} of the kernels`);
  const dir = tmpFolder('kernels-plan');
  try {
    const set = SETS[1]!;
    const { emb } = writeSet(dir, set);
    const base = { embeddings: emb, niter: 20, seed: 5, eps_list: [0.01, 0.05, 0.1], ...set.cfg };
    const single = join(dir, 'single');
    ok(cli(['run', '-c', writeConfig(dir, 'single.yaml', { ...base, output_dir: single }), '-q'], dir, KERNELS[0]!), 'single-process run');
    // The plan submitted to a stand-in sbatch that only answers a job id (written here by the
    // test); each task is then run by hand as a node would run it, under its own kernel.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'sbatch'), '#!/bin/sh\necho 4242\n');
    chmodSync(join(bin, 'sbatch'), 0o755);
    const planned = join(dir, 'planned');
    const cfg = writeConfig(dir, 'planned.yaml', { ...base, output_dir: planned });
    const sub = spawnSync(process.execPath, [CLI, 'run', '-c', cfg, '--executor', 'slurm', '--no-wait', '--tasks', '4'], {
      cwd: dir, encoding: 'utf8', env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
    });
    assert.equal(sub.status, 0, sub.stderr);
    const planPath = join(planned, 'semdedup', 'plan.json');
    const plan = JSON.parse(readFileSync(planPath, 'utf8')) as { stages: { name: string; tasks: number }[] };
    let n = 0;
    const used = new Set<string>();
    for (const st of plan.stages)
      for (let i = 0; i < st.tasks; i++, n++) {
        const kernel = KERNELS[n % KERNELS.length]!;
        used.add(`${st.name}:${kernel}`);
        ok(cli(['task', st.name, String(i), '--plan', planPath, '--threads', String(1 + (n % 2)), '-q'], dir, kernel), `task ${st.name} ${i} (${kernel})`);
      }
    assert.ok(plan.stages.find((s) => s.name === 'assign')!.tasks >= 2, 'several assign tasks');
    assert.ok([...used].filter((u) => u.startsWith('assign:')).length >= 2 && [...used].filter((u) => u.startsWith('dedup:')).length >= 2, `assign and dedup tasks ran under different kernels (${[...used].join(', ')})`);
    assertSameBytes(single, planned, 'planned run over mixed kernels');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nearest_cent, dist_to_cent and kept ids equal a float64 oracle of the definitions (20,000 x 256, planted ties and near ties, exact copies)', (t) => {
  const dir = tmpFolder('oracle');
  try {
    const N = 20_000;
    const D = 256;
    const K = 100;
    const EPS = [0.01, 0.05, 0.1];
    const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 31, dupFraction: 0.2, exactFraction: 0.5 });
    const X0 = ds.generate();
    const ids = Array.from({ length: N }, (_, i) => `doc-${String(i).padStart(6, '0')}`);
    writeFileSync(join(dir, 'ids.txt'), ids.join('\n') + '\n');
    // 1. The engine trains on the planted data.
    writeNpy(join(dir, 'x0.npy'), X0, { shape: [N, D] });
    const trained = join(dir, 'trained');
    ok(cli(['run', '-c', writeConfig(dir, 'trained.yaml', { embeddings: join(dir, 'x0.npy'), ids: join(dir, 'ids.txt'), output_dir: trained, k: K, niter: 20, seed: 9, spherical: true, eps_list: EPS }), '-q'], dir, KERNELS[0]!), 'trained run');
    const C0 = readNpy(join(trained, 'kmeans_centroids.npy')).data as Float32Array;

    // 2. Ties planted against those centroids: centroid b becomes centroid a with values p and q
    // swapped, and rows of cluster a get x_p = x_q = 0 (exactly equidistant from a and b in every
    // summation order) or x_p = 1e-7 (a near tie far inside the float32 pass's error bound); some
    // of those rows are copied to other positions.
    const C = C0.slice();
    const X = X0.slice();
    const nearest0 = readNpy(join(trained, 'nearest_cent.npy')).data as BigInt64Array;
    const pairs: [number, number][] = [[3, 4], [10, 11], [20, 21], [40, 41], [60, 61]];
    const members = new Map<number, number[]>();
    for (let i = 0; i < N; i++) {
      const c = Number(nearest0[i]);
      if (!members.has(c)) members.set(c, []);
      members.get(c)!.push(i);
    }
    let planted = 0;
    for (const [a, b] of pairs) {
      const p = (a * 7) % D;
      const q = (p + 13) % D;
      for (let j = 0; j < D; j++) C[b * D + j] = C0[a * D + j]!;
      C[b * D + p] = C0[a * D + q]!;
      C[b * D + q] = C0[a * D + p]!;
      const rows = members.get(a) ?? [];
      for (let r = 0; r < Math.min(40, rows.length); r++) {
        const i = rows[r]!;
        X[i * D + p] = r % 2 ? 1e-7 : 0;
        X[i * D + q] = 0;
        let s = 0;
        for (let j = 0; j < D; j++) s += X[i * D + j]! ** 2;
        const inv = 1 / Math.sqrt(s);
        for (let j = 0; j < D; j++) X[i * D + j] = Math.fround(X[i * D + j]! * inv);
        X[i * D + p] = r % 2 ? Math.fround(1e-7) : 0;
        X[i * D + q] = 0;
        planted++;
        if (r < 10) X.copyWithin(((i * 31 + 17) % N) * D, i * D, (i + 1) * D); // an exact copy elsewhere
      }
    }
    writeNpy(join(dir, 'x.npy'), X, { shape: [N, D] });
    writeNpy(join(dir, 'c.npy'), C, { shape: [K, D] });
    const out = join(dir, 'given');
    ok(cli(['run', '-c', writeConfig(dir, 'given.yaml', { embeddings: join(dir, 'x.npy'), ids: join(dir, 'ids.txt'), output_dir: out, k: K, spherical: true, centroids: join(dir, 'c.npy'), eps_list: EPS }), '-q'], dir, KERNELS[KERNELS.length - 1]!), 'run on the given centroids');

    for (const [name, dirOut, Xs, Cs] of [['trained', trained, X0, C0], ['given', out, X, C]] as const) {
      const nearest = readNpy(join(dirOut, 'nearest_cent.npy')).data as BigInt64Array;
      const dist = readNpy(join(dirOut, 'dist_to_cent.npy')).data as Float32Array;
      const ref = refAssignExact(Xs, N, D, Cs, K, true);
      for (let i = 0; i < N; i++) {
        assert.equal(Number(nearest[i]), ref.nearest[i], `${name}: row ${i} nearest_cent`);
        assert.ok(Object.is(dist[i], ref.dist[i]), `${name}: row ${i} dist_to_cent ${dist[i]} vs ${ref.dist[i]}`);
      }
      let ties = 0;
      let nearTies = 0;
      if (name === 'given') {
        for (const [a, b] of pairs)
          for (let i = 0; i < N; i++) {
            if (ref.nearest[i] !== a && ref.nearest[i] !== b) continue;
            const sa = dot64Lanes(Xs, i * D, Cs, a * D, D);
            const sb = dot64Lanes(Xs, i * D, Cs, b * D, D);
            if (sa === sb) {
              ties++;
              assert.equal(ref.nearest[i], Math.min(a, b), `${name}: row ${i} ties ${a} and ${b}`);
            } else if (Math.abs(sa - sb) <= 1e-6) {
              nearTies++;
            }
          }
        assert.ok(ties >= planted / 2 && nearTies >= planted / 4, `${ties} exact and ${nearTies} near ties among the ${planted} planted rows`);
      }
      // Steps 3-5 from the oracle's assignment: key = float32(1 - dist), stable ranking, float64 M.
      const key = Float32Array.from(ref.dist, (v) => 1 - v);
      const clusters = refRank(ref.nearest, key, K, true);
      const Ms = clusters.map((rows) => refMaxSim(Xs, D, rows).M);
      for (const eps of EPS) {
        const removed = Ms.map((M) => refDecisions(M, eps));
        const want = refExtract(clusters, removed, ids).kept;
        const got = readFileSync(join(dirOut, `kept_eps${eps}.txt`), 'utf8').split('\n').filter((l) => l !== '');
        assert.deepEqual(got, want, `${name}: kept ids at eps ${eps}`);
      }
      t.diagnostic(`${name}: ${N} rows equal the oracle${name === 'given' ? ` (${ties} rows exactly tied between two centroids, ${nearTies} near ties)` : ''}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('M and M_row equal a float64 oracle of the exact definition, with planted exact and near ties (and the kept ids follow from them)', (t) => {
  const dir = tmpFolder('oracle-m');
  try {
    const N = 6000;
    const D = 64;
    const K = 8;
    const EPS = [0.01, 0.05, 0.1];
    const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 41 });
    const X = ds.generate();
    // Triples (a, b, j) of nearly the same vector: x_j is 0 at p and q, x_b is x_a with the values
    // at p and q swapped, so x_a . x_j == x_b . x_j in every summation order (an exact tie); in
    // every other triple one value of x_b that x_j does not zero moves one ulp (a near tie, far
    // inside the float32 filter's bound). Rows are used as they are (x_j's norm drops a little). Whichever of
    // the three comes last in keep order (random) sees a tie or near tie when it is j.
    const triples = 400;
    for (let t3 = 0; t3 < triples; t3++) {
      const src = (t3 * 13) % N;
      const [a, b, j] = [(t3 * 3 + 1000) % N, (t3 * 3 + 1001) % N, (t3 * 3 + 1002) % N];
      if ([a, b, j].includes(src)) continue;
      const p = t3 % D;
      const q = (p + 16) % D; // the same summation lane as p
      for (let e = 0; e < D; e++) X[a * D + e] = X[src * D + e]!;
      X[a * D + ((p + 7) % D)] = Math.fround(X[a * D + ((p + 7) % D)]! + 0.01); // a is not a copy of src
      for (let e = 0; e < D; e++) X[b * D + e] = X[j * D + e] = X[a * D + e]!;
      const tmp = X[b * D + p]!;
      X[b * D + p] = X[b * D + q]!;
      X[b * D + q] = tmp;
      X[j * D + p] = 0;
      X[j * D + q] = 0;
      X[j * D + ((p + 3) % D)] = Math.fround(X[j * D + ((p + 3) % D)]! + 1e-4); // j is not a copy
      if (t3 % 2) {
        const r = (p + 5) % D;
        const v = X[b * D + r]!;
        const f32 = new Float32Array([v]);
        const u32 = new Uint32Array(f32.buffer);
        u32[0]! += 1;
        X[b * D + r] = f32[0]!;
      }
    }
    writeNpy(join(dir, 'x.npy'), X, { shape: [N, D] });
    const out = join(dir, 'out');
    ok(cli(['run', '-c', writeConfig(dir, 'run.yaml', { embeddings: join(dir, 'x.npy'), output_dir: out, k: K, niter: 10, seed: 3, spherical: true, normalize: 'never', which_to_keep: 'random', eps_list: EPS }), '-q'], dir, KERNELS[KERNELS.length - 1]!), 'run');
    const keepOrder = readNpy(join(out, 'semdedup', 'keep_order.npy')).data as BigInt64Array;
    const offsets = readNpy(join(out, 'semdedup', 'cluster_offsets.npy')).data as BigInt64Array;
    const M = readNpy(join(out, 'semdedup', 'M.npy')).data as Float64Array;
    const Mrow = readNpy(join(out, 'semdedup', 'M_row.npy')).data as BigInt64Array;
    let ties = 0;
    let nearTies = 0;
    const removed = new Map<number, number>(EPS.map((e) => [e, 0]));
    for (let c = 0; c + 1 < offsets.length; c++) {
      const b0 = Number(offsets[c]!);
      const rows = Array.from(keepOrder.subarray(b0, Number(offsets[c + 1]!)), Number);
      const ref = refMaxSimExact(X, D, rows);
      for (let q = 0; q < rows.length; q++) {
        const p = b0 + q;
        assert.ok(Object.is(M[p], ref.M[q]), `cluster ${c}, position ${q}: M ${M[p]} vs the float64 definition ${ref.M[q]}`);
        const want = ref.arg[q]! >= 0 ? BigInt(rows[ref.arg[q]!]!) : -1n;
        assert.equal(Mrow[p], want, `cluster ${c}, position ${q}: M_row`);
        if (ref.M[q]! > 0 && ref.second[q] === ref.M[q]) ties++;
        else if (ref.M[q]! > 0 && ref.M[q]! - ref.second[q]! <= 1e-6) nearTies++;
      }
      for (const eps of EPS) removed.set(eps, removed.get(eps)! + refDecisions(ref.M, eps).filter(Boolean).length);
    }
    assert.ok(ties >= 20 && nearTies >= 20, `${ties} members with an exact tie and ${nearTies} with a near tie between two earlier members`);
    const summary = JSON.parse(readFileSync(join(out, 'semdedup', 'summary.json'), 'utf8')) as { eps: { eps: number; removed: number }[] };
    for (const e of summary.eps) assert.equal(e.removed, removed.get(e.eps), `removed at eps ${e.eps}`);
    t.diagnostic(`${N} members: M and M_row bit for bit the float64 definition; ${ties} exact ties, ${nearTies} near ties`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
