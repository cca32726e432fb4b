// Planned runs (src/plan): the dedup partition, the row-block kernel, and the local executor, whose
// files must equal a single-process run's byte for byte whatever the task count; resume, status
// and failures as a user meets them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dedupItems } from '../src/plan/partition.js';
import { engineFor, loadNative } from '../src/native/index.js';
import { openEmbeddings } from '../src/embeddings.js';
import { readPlan, rowRanges } from '../src/plan/plan.js';
import { readState } from '../src/plan/state.js';
import { SynthDataset } from '../tools/synth.js';
import { writeNpy } from '../src/io/npy.js';
import { runCli, tmpFolder } from './helpers.js';
import { assertSameOutputs, assertSameRecords, writeConfig, writeDataset } from './plan-helpers.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('dedup partition: every position of every cluster once, in order, blocks at the tile bounds, balanced', () => {
  const layout = (n: number) => ({ split: n > 4096, width: n >= 65536 ? 2048 : 512 });
  const r = rng(5);
  for (let trial = 0; trial < 200; trial++) {
    const k = 1 + Math.floor(r() * 60);
    const sizes = Array.from({ length: k }, () => (r() < 0.15 ? 0 : r() < 0.1 ? Math.floor(r() * 200_000) : Math.floor(r() * 3000)));
    const tasks = 1 + Math.floor(r() * 16);
    const items = dedupItems(sizes, tasks, layout);
    // Coverage: walking the items gives each non-empty cluster's [0, n) exactly, clusters in order.
    let at = 0;
    let c = -1;
    let j = 0;
    for (const it of items) {
      if (it.cluster !== c) {
        assert.equal(j, c >= 0 ? sizes[c] : 0, 'the previous cluster was covered to its end');
        assert.ok(it.cluster > c);
        for (let e = c + 1; e < it.cluster; e++) assert.equal(sizes[e], 0, 'only empty clusters are skipped');
        c = it.cluster;
        j = 0;
      }
      assert.equal(it.j0, j);
      assert.ok(it.j1 > it.j0);
      assert.equal(it.n, sizes[c]);
      if (it.j0 !== 0 || it.j1 !== it.n) {
        assert.ok(layout(it.n).split, 'only clusters the kernel splits are cut into blocks');
        assert.equal(it.j0 % layout(it.n).width, 0);
        assert.ok(it.j1 === it.n || it.j1 % layout(it.n).width === 0);
      }
      assert.ok(it.task >= at && it.task < tasks, 'tasks take consecutive runs of items');
      at = it.task;
      j = it.j1;
    }
    if (c >= 0) assert.equal(j, sizes[c]);
    for (let e = c + 1; e < k; e++) assert.equal(sizes[e], 0);
    // Balance: no task holds more than one share plus its largest item.
    const total = sizes.reduce((a, n) => a + n * n, 0);
    const cost = new Array(tasks).fill(0);
    const biggest = new Array(tasks).fill(0);
    for (const it of items) {
      const w = it.j1 * it.j1 - it.j0 * it.j0;
      cost[it.task] += w;
      biggest[it.task] = Math.max(biggest[it.task], w);
    }
    for (let t = 0; t < tasks; t++) assert.ok(cost[t] <= total / tasks + biggest[t] + 1e-6, `task ${t}: ${cost[t]} > share ${total / tasks} + ${biggest[t]}`);
  }
});

test('row ranges of the assignment start at multiples of 4096 and cover the rows', () => {
  for (const [n, t] of [[10_000, 3], [200_000, 4], [4096, 4], [1, 8], [1_000_001, 7]] as const) {
    const rr = rowRanges(n, t);
    assert.ok(rr.length <= t);
    assert.equal(rr[0]![0], 0);
    assert.equal(rr[rr.length - 1]![1], n);
    for (let i = 0; i < rr.length; i++) {
      assert.equal(rr[i]![0] % 4096, 0);
      if (i > 0) assert.equal(rr[i]![0], rr[i - 1]![1]);
    }
  }
});

test('maxSimilarityBlock: blocks of a split cluster equal the whole-cluster kernel bit for bit, and a float64 brute force', async () => {
  const dir = tmpFolder('plan-block');
  const n = 5000; // above the kernel's whole-cluster limit (4096): it splits the cluster into 512-wide tiles
  const d = 32;
  const ds = new SynthDataset({ n, dim: d, clusters: 1, seed: 11, dupFraction: 0.2 });
  const data = ds.generate();
  const path = join(dir, 'x.npy');
  writeNpy(path, data, { shape: [n, d] });
  const emb = openEmbeddings({ path });
  const addon = loadNative();
  try {
    assert.deepEqual(addon.maxSimLayout({ n, d }), { split: true, width: 512 });
    assert.deepEqual(addon.maxSimLayout({ n: 4096, d }), { split: false, width: 128 });
    // A keep order that is not the row order.
    const rows = new BigInt64Array(n);
    for (let i = 0; i < n; i++) rows[i] = BigInt((i * 7919) % n);
    const thresholds = [0.99, 0.95];
    const M = new Float64Array(n);
    const arg = new BigInt64Array(n);
    await addon.maxSimilarity({ emb: emb.native, order: rows, offsets: BigInt64Array.from([0n, BigInt(n)]), M, arg, thresholds, threads: 2, engine: engineFor('cpu') });
    for (const [j0, j1] of [[0, 512], [512, 2560], [2560, 5000], [0, 5000]] as const) {
      const bm = new Float64Array(j1 - j0);
      const ba = new BigInt64Array(j1 - j0);
      await addon.maxSimilarityBlock({ emb: emb.native, rows, j0, j1, M: bm, arg: ba, thresholds, threads: 2 });
      for (let j = j0; j < j1; j++) {
        assert.ok(Object.is(bm[j - j0], M[j]), `block [${j0}, ${j1}): M[${j}] = ${bm[j - j0]}, whole kernel ${M[j]}`);
        assert.equal(ba[j - j0], arg[j]);
      }
    }
    // float64 brute force over a sample of positions.
    for (let j = 0; j < n; j += 97) {
      const xj = Number(rows[j]);
      let best = 0;
      for (let i = 0; i < j; i++) {
        const xi = Number(rows[i]);
        let s = 0;
        for (let t = 0; t < d; t++) s += data[xi * d + t]! * data[xj * d + t]!;
        if (s > best) best = s;
      }
      assert.ok(Math.abs(best - M[j]!) <= 1e-5, `position ${j}: ${M[j]} vs float64 ${best}`);
    }
    await assert.rejects(addon.maxSimilarityBlock({ emb: emb.native, rows, j0: 100, j1: 612, M: new Float64Array(512), arg: new BigInt64Array(512), thresholds }), /multiples of the tile width/);
    assert.throws(() => addon.maxSimilarityBlock({ emb: emb.native, rows, j0: 0, j1: 512, M: new Float64Array(10), arg: new BigInt64Array(10), thresholds }), /j1 - j0 values/);
  } finally {
    emb.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('local executor: the built-in example gives the single-process bytes with 1 and 3 tasks; rerun, task and status', () => {
  const dir = tmpFolder('plan-local');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 10_000, dim: 64, clusters: 20, seed: 1 });
    const base = { embeddings: emb, k: 20, spherical: true, eps_list: [0.01, 0.05, 0.1] };
    const single = join(dir, 'single');
    const cfg = writeConfig(dir, 'c.yaml', { ...base, output_dir: single });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    for (const [tasks, workers] of [[1, 1], [3, 2]] as const) {
      const out = join(dir, `local${tasks}`);
      r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'local', '--tasks', String(tasks), '--workers', String(workers)], dir, 300_000);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /done in .* \(local; \d+ tasks run, 0 found complete\)/);
      const compared = assertSameOutputs(single, out);
      assert.ok(compared.includes('kept_eps0.05.txt'));
      const plan = readPlan(join(out, 'semdedup', 'plan.json'));
      assert.equal(plan.stages.find((s) => s.name === 'dedup')!.tasks, tasks);
    }
    const out = join(dir, 'local3');
    // The single-process commands read a planned run's folder: its steps are committed in the manifest.
    r = runCli(['extract', '-c', cfg, '--set', `output_dir=${out}`, '--eps', '0.05', '-o', join(dir, 'again.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(join(dir, 'again.txt')).equals(readFileSync(join(out, 'kept_eps0.05.txt'))));
    // The same command again: nothing to do.
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'local', '--tasks', '3', '--workers', '2'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /0 tasks run, 11 found complete/);
    // A complete task does nothing (its outputs keep their times).
    const plan = readPlan(join(out, 'semdedup', 'plan.json'));
    const mPart = readState(plan, 'dedup', 1)!.outputs!.M!.path;
    const before = statSync(mPart).mtimeMs;
    r = runCli(['task', 'dedup', '1', '--plan', join(out, 'semdedup', 'plan.json')], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /already complete/);
    assert.equal(statSync(mPart).mtimeMs, before);
    // A task whose output is gone is pending: status says so, the rerun runs it alone.
    rmSync(mPart);
    r = runCli(['status', out], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\s+dedup\s+3\s+2\s+0\s+0\s+1$/m);
    assert.match(r.stdout, /10 of 11 tasks done; rerun the same `semdedup run` command/);
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'local', '--tasks', '3', '--workers', '2'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 task run, 10 found complete/);
    assertSameOutputs(single, out);
    r = runCli(['status', out, '--json'], dir);
    const st = JSON.parse(r.stdout) as { complete: boolean; stages: { stage: string; done: number }[] };
    assert.equal(st.complete, true);
    r = runCli(['status', out], dir);
    assert.match(r.stdout, /complete: all 11 tasks done/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planned runs of 1, 3 and 5 tasks: every file, every manifest record and summary.json equal the single-process run\'s', () => {
  const dir = tmpFolder('plan-same');
  try {
    // Exact copies planted (the exact-duplicates pass), ids from a text file, the original's sorted
    // clusters exported, the easy keep order, the cosine key of non-spherical k-means.
    const emb = writeDataset(dir, 'x.npy', { n: 20_000, dim: 32, clusters: 12, seed: 9, dupFraction: 0.2, exactFraction: 0.3 });
    const ids = join(dir, 'ids.txt');
    writeFileSync(ids, Array.from({ length: 20_000 }, (_, i) => `doc-${(i * 7919) % 100_003}`).join('\n') + '\n');
    const single = join(dir, 'single');
    const cfg = writeConfig(dir, 'c.yaml', {
      embeddings: emb, ids, k: 12, spherical: false, sim_metric: 'cosine', which_to_keep: 'easy', eps_list: [0.02, 0.08],
      export_sorted_clusters: true, exact_duplicates: true, output_dir: single,
    });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    for (const tasks of [1, 3, 5]) {
      const out = join(dir, `local${tasks}`);
      r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'local', '--tasks', String(tasks), '--workers', '2', '-q'], dir, 300_000);
      assert.equal(r.code, 0, r.stderr);
      const plan = readPlan(join(out, 'semdedup', 'plan.json'));
      for (const stage of ['assign', 'group', 'dedup']) assert.equal(plan.stages.find((s) => s.name === stage)!.tasks, tasks, `${stage}: ${tasks} tasks`);
      const compared = assertSameOutputs(single, out);
      for (const must of ['kept_eps0.08.txt', join('semdedup', 'exact_duplicates.npy'), join('sorted_clusters', 'cluster_11.npy')])
        assert.ok(compared.includes(must), `${must} among the compared files`);
      const steps = assertSameRecords(single, out);
      assert.deepEqual(steps, ['check', 'cluster', 'dedup', 'exact', 'extract', 'sort', 'train']);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('local executor: split clusters, random keep order and the cosine key of non-spherical k-means, same bytes as one process', () => {
  const dir = tmpFolder('plan-split');
  try {
    // Heavy cluster sizes: the largest cluster is above the kernel's whole-cluster limit and costs
    // more than one task's share, so dedup tasks compute row blocks of it.
    const emb = writeDataset(dir, 'x.npy', { n: 40_000, dim: 32, clusters: 8, seed: 4, sizeDistribution: 'heavy' });
    const base = { embeddings: emb, k: 8, spherical: false, sim_metric: 'cosine', which_to_keep: 'random', seed: 77, eps_list: [0.02, 0.1] };
    const single = join(dir, 'single');
    const cfg = writeConfig(dir, 'c.yaml', { ...base, output_dir: single });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const out = join(dir, 'local');
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'local', '--tasks', '4', '--workers', '2'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assertSameOutputs(single, out);
    assertSameRecords(single, out);
    const plan = readPlan(join(out, 'semdedup', 'plan.json'));
    let blocks = 0;
    for (let t = 0; t < 4; t++) blocks += (readState(plan, 'dedup', t)!.info!.blocks as number) ?? 0;
    assert.ok(blocks >= 2, `the largest cluster was computed in row blocks (${blocks})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planned runs: a failing task is named with its log; status shows it; bad options are config errors', () => {
  const dir = tmpFolder('plan-fail');
  try {
    // Rows that are not unit vectors: the train task refuses them (normalize: auto).
    const n = 5000;
    const d = 16;
    const x = new Float32Array(n * d);
    const r0 = rng(3);
    for (let i = 0; i < x.length; i++) x[i] = r0() * 2 - 1;
    writeNpy(join(dir, 'x.npy'), x, { shape: [n, d] });
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'x.npy'), k: 5, output_dir: out });
    // Rows that are not unit length are refused before the plan or its folder is written.
    let r = runCli(['run', '-c', cfg, '--executor', 'local', '--workers', '2'], dir, 120_000);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /not L2-normalised/);
    assert.equal(existsSync(out), false, 'nothing created for refused rows');
    // A task that fails: the train task cannot write the centroids where a folder stands.
    mkdirSync(join(out, 'kmeans_centroids.npy'), { recursive: true });
    r = runCli(['run', '-c', cfg, '--set', 'normalize=always', '--executor', 'local', '--workers', '2', '--json'], dir, 120_000);
    assert.equal(r.code, 1, r.stderr);
    assert.equal((JSON.parse(r.stdout.trim().split('\n').pop()!) as { error: { code: string } }).error.code, 'ERR_TASK', r.stdout);
    const log = join(out, 'semdedup', 'plan', 'logs', 'train.0.log');
    assert.ok(r.stderr.includes('1 task failed:'), r.stderr);
    assert.ok(r.stderr.includes('train task 0: '), r.stderr);
    assert.ok(r.stderr.includes(`log: ${log}`), r.stderr);
    assert.match(r.stderr, /kmeans_centroids\.npy/);
    assert.match(r.stderr, /rerunning the same command runs only what is not complete/);
    assert.match(readFileSync(log, 'utf8'), /kmeans_centroids\.npy/);
    r = runCli(['status', out], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /failed:\n {2}train 0: .*kmeans_centroids\.npy/);
    assert.match(r.stdout, /0 of 8 tasks done, 1 failed/);
    // The cause removed, the same plan runs and completes.
    rmSync(join(out, 'kmeans_centroids.npy'), { recursive: true });
    r = runCli(['run', '-c', cfg, '--set', 'normalize=always', '--executor', 'local', '--workers', '2'], dir, 120_000);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(existsSync(join(out, 'kept_eps0.05.txt')));
    // Options.
    r = runCli(['run', '-c', cfg, '--tasks', '3'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tasks needs --executor local or slurm/);
    r = runCli(['run', '-c', cfg, '--executor', 'local', '--tasks', '0'], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--tasks must be a positive integer/);
    r = runCli(['task', 'sort', '0', '--plan', join(out, 'semdedup', 'plan.json')], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown stage 'sort': the stages are train, assign, group, dedup, extract/);
    r = runCli(['task', 'dedup', '9', '--plan', join(out, 'semdedup', 'plan.json')], dir);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /stage dedup has tasks 0..1; there is no task 9/);
    r = runCli(['status', join(dir, 'nowhere')], dir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no planned run here/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
