// Cross-check with the Python implementation of the original pipeline (bench/peer): the same
// generated dataset through our CLI and through the original's code, with our centroids given to
// the peer, must give the same assignment, the same sorted cluster files (distances within 1e-6:
// ours are the float32 roundings of float64 values, the original's FAISS's float32 sums), the same
// M and the same kept id files; our k-means must give centroids within 1e-5 of faiss.Kmeans's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { SynthDataset } from '../tools/synth.js';
import { writeIdsMemmap } from '../src/io/ids.js';
import { readNpy } from '../src/io/npy.js';
import { outputs } from '../src/layout.js';
import { referencePython } from './helpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
// Compiled to dist/test/: the repository root is two levels up.
const REPO = resolve(HERE, '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli.js');
const PEER = join(REPO, 'bench', 'peer', 'original_pipeline.py');
const PYTHON = referencePython(['numpy', 'faiss', 'torch', 'pandas']);

const N = 4000;
const D = 32;
const K = 8;
const EPS = [0.01, 0.05, 0.1];
const SEED = 1234;
const NITER = 20;

// ---------------------------------------------------------------------------------------------
// The peer's interpreter must be there: a missing one is a failure, never a skip.

let pythonProblem: string | null | undefined;
function requirePython(): void {
  if (pythonProblem === undefined) {
    if (!existsSync(PEER)) pythonProblem = `${PEER} not found`;
    else {
      try {
        execFileSync(PYTHON, ['-c', 'import numpy, faiss, torch, pandas'], { stdio: 'pipe' });
        pythonProblem = null;
      } catch (e) {
        const err = (e as { stderr?: Buffer }).stderr?.toString().trim().split('\n').pop() ?? String(e);
        pythonProblem = `${PYTHON} cannot import numpy, faiss, torch and pandas (${err}): the peer cross-check needs them`;
      }
    }
  }
  if (pythonProblem) assert.fail(pythonProblem);
}

// ---------------------------------------------------------------------------------------------
// Data: a raw float32 memmap and an S24 ids memmap, as the original stores them.

const ROOT = mkdtempSync(join(tmpdir(), 'semdedup-peer-'));
process.on('exit', () => rmSync(ROOT, { recursive: true, force: true }));
const EMB = join(ROOT, 'emb.f32');
const IDS = join(ROOT, 'ids.S24');
{
  const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 3, dupFraction: 0.2, exactFraction: 0.3 });
  const X = ds.generate();
  writeFileSync(EMB, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
  writeIdsMemmap(IDS, Array.from({ length: N }, (_, i) => `n04235860_${String(i).padStart(5, '0')}.JPEG`), 24);
}

// The original with single-threaded BLAS: some OpenBLAS kernels (e.g. Haswell) round the rows at
// the edges of their thread partition differently, so FAISS's own distances then depend on its
// BLAS thread count; with one thread they are the deterministic reference the engine matches.
const PEER_ENV = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    execFile(cmd, args, { cwd: ROOT, maxBuffer: 16 << 20, timeout: 120_000, env: PEER_ENV }, (err, stdout, stderr) => {
      if (err) rej(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else res(stdout);
    });
  });
}

// Peer runs share two cores: at most two at a time.
let peerSlots = 2;
const peerQueue: (() => void)[] = [];
async function peerRun(args: string[]): Promise<string> {
  if (peerSlots === 0) await new Promise<void>((r) => peerQueue.push(r));
  else peerSlots--;
  try {
    return await run(PYTHON, [PEER, ...args]);
  } finally {
    const next = peerQueue.shift();
    if (next) next();
    else peerSlots++;
  }
}

interface Mode {
  name: string;
  spherical: boolean;
  simMetric: 'cosine' | 'l2';
  keepHard: boolean;
  which: 'hard' | 'easy' | 'random';
}

interface Pair {
  ours: string;
  peer: string;
}

const pairs = new Map<string, Promise<Pair>>();
/** Our CLI run, then the peer with our centroids and the same options. */
function pair(m: Mode): Promise<Pair> {
  let p = pairs.get(m.name);
  if (!p) {
    p = (async () => {
      requirePython();
      const ours = join(ROOT, `ours-${m.name}`);
      const peer = join(ROOT, `peer-${m.name}`);
      const set = (kv: string) => ['--set', kv];
      await run(process.execPath, [
        CLI, 'run', '-q', '--device', 'cpu',
        ...set(`embeddings=${EMB}`), ...set(`dim=${D}`), ...set(`dataset_size=${N}`),
        ...set(`ids=${IDS}`), ...set('ids_format=memmap'), ...set('ids_dtype=S24'),
        ...set(`output_dir=${ours}`), ...set(`k=${K}`), ...set(`niter=${NITER}`), ...set(`seed=${SEED}`),
        ...set(`spherical=${m.spherical}`), ...set(`sim_metric=${m.simMetric}`), ...set(`keep_hard=${m.keepHard}`),
        ...set(`which_to_keep=${m.which}`), ...set(`eps_list=${EPS.join(',')}`), ...set('export_sorted_clusters=true'),
        ...set('kept_file_format=original'), // the original's bytes (no final newline), compared byte for byte below
      ]);
      await peerRun([
        '--emb', EMB, '--n', String(N), '--d', String(D), '--ids', IDS, '--ids-dtype', 'S24',
        '--k', String(K), '--out', peer, '--niter', String(NITER), '--seed', String(SEED),
        m.spherical ? '--spherical' : '--no-spherical', '--sim-metric', m.simMetric,
        ...(m.keepHard ? ['--keep-hard'] : ['--keep-easy-first']),
        '--which-to-keep', m.which, '--eps-list', EPS.join(','),
        '--centroids', outputs.centroids(ours),
      ]);
      return { ours, peer };
    })();
    pairs.set(m.name, p);
  }
  return p;
}

const MODES: Mode[] = [
  { name: 'spherical-hard', spherical: true, simMetric: 'cosine', keepHard: true, which: 'hard' },
  { name: 'spherical-easy', spherical: true, simMetric: 'cosine', keepHard: true, which: 'easy' },
  { name: 'cosine-ascending-hard', spherical: false, simMetric: 'cosine', keepHard: false, which: 'hard' },
  { name: 'l2-easy', spherical: false, simMetric: 'l2', keepHard: true, which: 'easy' },
];
const RANDOM: Mode = { name: 'spherical-random', spherical: true, simMetric: 'cosine', keepHard: true, which: 'random' };

// Start every run at once; the tests await theirs.
for (const m of [...MODES, RANDOM]) pair(m).catch(() => {});

function npy(path: string) {
  return readNpy(path);
}

// ---------------------------------------------------------------------------------------------

test('the peer interpreter has numpy, faiss, torch and pandas', () => {
  requirePython();
});

for (const m of MODES) {
  test(`peer ${m.name}: assignment, sorted cluster files, M and kept ids equal the original's`, async (t) => {
    const { ours, peer } = await pair(m);

    // Step 2 with the same centroids.
    const on = npy(outputs.nearest(ours));
    const pn = npy(join(peer, 'nearest_cent.npy'));
    assert.equal(on.header.descr, pn.header.descr, 'nearest_cent dtype');
    assert.deepEqual(Array.from(on.data as BigInt64Array), Array.from(pn.data as BigInt64Array), 'nearest_cent');
    const od = npy(outputs.dist(ours)).data as Float32Array;
    const pd = npy(join(peer, 'dist_to_cent.npy')).data as Float32Array;
    assert.equal(od.length, N);
    let distBitsDiffer = 0;
    for (let i = 0; i < N; i++) {
      assert.ok(Math.abs(od[i]! - pd[i]!) <= 1e-6, `dist_to_cent[${i}]: ${od[i]} vs peer ${pd[i]}`);
      if (od[i] !== pd[i]) distBitsDiffer++;
    }
    if (distBitsDiffer) t.diagnostic(`dist_to_cent: ${distBitsDiffer} values differ in their last bits`);

    // Step 3: the original's sorted cluster files.
    let textDiffers = 0;
    let swaps = 0;
    for (let c = 0; c < K; c++) {
      const f = `cluster_${c}.npy`;
      const a = readFileSync(join(ours, 'sorted_clusters', f));
      const b = readFileSync(join(peer, 'sorted_clusters', f));
      if (a.equals(b)) continue;
      // The distances differ in their last bits: ours are float32 roundings of float64 values
      // (docs/algorithm.md), the original's FAISS's float32 inner products or squared distances,
      // or torch's float32 cosine. Same members, same order, same ids and labels; the distance
      // text within 1e-6.
      const oa = npy(join(ours, 'sorted_clusters', f));
      const pa = npy(join(peer, 'sorted_clusters', f));
      assert.equal(oa.header.descr, pa.header.descr, `${f} dtype`);
      assert.deepEqual(oa.header.shape, pa.header.shape, `${f} shape`);
      const ov = oa.data as string[];
      const pv = pa.data as string[];
      const members = new Map<string, number>();
      for (let i = 0; i < ov.length; i += 4) {
        // A different member at one position is a near-tie swap: the two distances (each within
        // 1e-6 of the original's) lie within 2e-6 of each other.
        if (ov[i + 1] !== pv[i + 1]) swaps++;
        else assert.equal(ov[i], pv[i], `${f} row ${i / 4}: id`);
        members.set(ov[i + 1]!, (members.get(ov[i + 1]!) ?? 0) + 1);
        members.set(pv[i + 1]!, (members.get(pv[i + 1]!) ?? 0) - 1);
        assert.equal(ov[i + 3], pv[i + 3], `${f} row ${i / 4}: cluster`);
        assert.ok(Math.abs(Number(ov[i + 2]) - Number(pv[i + 2])) <= 2e-6, `${f} row ${i / 4}: distance ${ov[i + 2]} vs ${pv[i + 2]}`);
        if (ov[i + 2] !== pv[i + 2]) textDiffers++;
      }
      assert.ok([...members.values()].every((v) => v === 0), `${f}: the same members as the original's`);
    }
    if (textDiffers) t.diagnostic(`sorted clusters: ${textDiffers} distances differ from the original's float32 values in the last bits`);
    if (swaps) t.diagnostic(`sorted clusters: ${swaps} positions hold the other member of a near tie`);

    // Step 4: M in the table order of the original, at every position whose prefix of the cluster
    // holds the same members as the original's (outside the near-tie swaps).
    const keepOrder = npy(outputs.keepOrder(ours)).data as BigInt64Array;
    const offsets = npy(outputs.offsets(ours)).data as BigInt64Array;
    const Mo = npy(outputs.M(ours)).data as Float64Array;
    const Mp = npy(join(peer, 'M.npy')).data as Float32Array;
    const rows = npy(join(peer, 'M_rows.npy')).data as BigInt64Array;
    assert.equal(Mo.length, Mp.length);
    const swapped = new Set<number>();
    for (let c = 0; c < K; c++) {
      const open = new Map<bigint, number>();
      const bump = (r: bigint, v: number) => {
        const x = (open.get(r) ?? 0) + v;
        if (x === 0) open.delete(r);
        else open.set(r, x);
      };
      for (let p = Number(offsets[c]); p < Number(offsets[c + 1]); p++) {
        const wasOpen = open.size > 0;
        bump(keepOrder[p]!, 1);
        bump(rows[p]!, -1);
        if (keepOrder[p] === rows[p] && !wasOpen && open.size === 0) {
          assert.ok(Math.abs(Mo[p]! - Mp[p]!) <= 1e-5, `M[${p}] (row ${rows[p]}): ${Mo[p]} vs peer ${Mp[p]}`);
        } else {
          swapped.add(Number(keepOrder[p]));
          swapped.add(Number(rows[p]));
        }
      }
      assert.equal(open.size, 0, `cluster ${c}: the same members as the original's`);
    }
    assert.ok(swapped.size <= 0.01 * N, `${swapped.size} rows in near-tie swaps`);

    // Step 5: the kept id files: equal, except that a near-tie swap may keep the other member of
    // the pair; the kept count of every cluster is the original's.
    const nearest = npy(outputs.nearest(ours)).data as BigInt64Array;
    const idOf = (r: number) => `n04235860_${String(r).padStart(5, '0')}.JPEG`;
    const clusterOf = new Map<string, number>();
    for (let r = 0; r < N; r++) clusterOf.set(idOf(r), Number(nearest[r]));
    const swappedIds = new Set([...swapped].map(idOf));
    for (const eps of EPS) {
      const a = readFileSync(join(ours, `kept_eps${eps}.txt`));
      const b = readFileSync(join(peer, `kept_eps${eps}.txt`));
      if (a.equals(b)) continue;
      const ka = a.toString().split('\n');
      const kb = b.toString().split('\n');
      const perCluster = new Array<number>(K).fill(0);
      for (const id of ka) perCluster[clusterOf.get(id)!]!++;
      for (const id of kb) perCluster[clusterOf.get(id)!]!--;
      assert.ok(perCluster.every((v) => v === 0), `eps ${eps}: kept counts per cluster differ from the original's`);
      const sa = new Set(ka);
      const sb = new Set(kb);
      for (const id of [...ka.filter((x) => !sb.has(x)), ...kb.filter((x) => !sa.has(x))])
        assert.ok(swappedIds.has(id), `eps ${eps}: ${id} kept by one side only, and not in a near-tie swap`);
      t.diagnostic(`kept_eps${eps}.txt: ${ka.filter((x) => !sb.has(x)).length} ids differ from the original's (near-tie swaps)`);
    }
  });
}

test('peer random: kept counts per eps close to the original (different generators)', async () => {
  const { ours, peer } = await pair(RANDOM);
  const hard = await pair(MODES[0]!);
  const count = (file: string) => {
    const s = readFileSync(file, 'utf8');
    return s.length === 0 ? 0 : s.split('\n').length;
  };
  let prev = 0;
  for (const eps of EPS) {
    const o = count(join(ours, `kept_eps${eps}.txt`));
    const p = count(join(peer, `kept_eps${eps}.txt`));
    const h = count(join(hard.ours, `kept_eps${eps}.txt`));
    assert.ok(Math.abs(o - p) <= 0.01 * N, `eps ${eps}: we keep ${o}, the original ${p}`);
    assert.ok(Math.abs(o - h) <= 0.01 * N, `eps ${eps}: random keeps ${o}, hard ${h}`);
    assert.ok(o < N && o > 0.7 * N, `eps ${eps}: kept ${o} of ${N}`);
    if (prev) assert.ok(o <= prev, 'kept count grows with eps');
    prev = o;
    // Same set of ids as a multiset: unique, and each a real id.
    const ids = readFileSync(join(ours, `kept_eps${eps}.txt`), 'utf8').split('\n');
    assert.equal(new Set(ids).size, ids.length, `eps ${eps}: duplicate ids in the kept file`);
  }
});

for (const spherical of [true, false]) {
  test(`peer k-means (${spherical ? 'spherical' : 'L2'}): our centroids are within 1e-5 of the original's faiss.Kmeans centroids`, async (t) => {
    requirePython();
    const ours = await pair(spherical ? MODES[0]! : MODES[2]!);
    const out = join(ROOT, `peer-kmeans-${spherical}`);
    await peerRun([
      '--emb', EMB, '--n', String(N), '--d', String(D), '--k', String(K), '--out', out,
      '--niter', String(NITER), '--seed', String(SEED), spherical ? '--spherical' : '--no-spherical', '--stages', 'kmeans_train',
    ]);
    const a = npy(outputs.centroids(ours.ours));
    const b = npy(join(out, 'kmeans_centroids.npy'));
    assert.deepEqual(a.header.shape, [K, D]);
    assert.deepEqual(b.header.shape, [K, D]);
    const ca = a.data as Float32Array;
    const cb = b.data as Float32Array;
    let maxDiff = 0;
    let bitsDiffer = 0;
    for (let i = 0; i < ca.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(ca[i]! - cb[i]!));
      if (ca[i] !== cb[i]) bitsDiffer++;
    }
    assert.ok(maxDiff <= 1e-5, `centroids differ by up to ${maxDiff}`);
    t.diagnostic(bitsDiffer === 0 ? 'centroids bit-identical to faiss.Kmeans' : `${bitsDiffer} centroid values differ (max ${maxDiff})`);
  });
}
