// A user of the original runs the `semdedup` CLI on their files and configs unchanged: the
// original's two YAML files (raw float32 memmap + S24 ids memmap), the original's commands, and
// the original's outputs; then resume, given centroids, info, example, --json and config-doc.
// Every test works in a folder of its own (none reads what another wrote), so each runs alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { writeIdsMemmap } from '../src/io/ids.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { SynthDataset } from '../tools/synth.js';
import { refAssign, refDecisions, refExtract, refMaxSim, refRank } from './reference.js';
import { ROOT, TOOLS_CLI, runCli, type CliResult } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// Helpers.


/** `semdedup ARGS` in `cwd`. */
function semdedup(args: string[], cwd: string): CliResult {
  return runCli(args, cwd);
}

/** `semdedup-tools ARGS` in `cwd` (the example and the benchmark harness). */
function tools(args: string[], cwd: string): CliResult {
  return runCli(args, cwd, 120_000, TOOLS_CLI);
}

function ok(r: CliResult, what: string): CliResult {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

const N = 3000;
const DIM = 32;
const K = 10;
const ds = new SynthDataset({ n: N, dim: DIM, clusters: K, seed: 5 });
const X = ds.generate();
const IDS = Array.from({ length: N }, (_, i) => `n04235860_${String(10000 + i * 7)}.JPEG`);

/** The original's config file with some values replaced (comments and layout kept). */
function originalConfig(name: 'clustering_configs.yaml' | 'semdedup_configs.yaml', values: Record<string, string>): string {
  let text = readFileSync(path.join(ROOT, 'configs', 'original', name), 'utf8');
  for (const [k, v] of Object.entries(values)) {
    const re = new RegExp(`^${k}:[^\\n#]*`, 'm');
    assert.match(text, re, `configs/original/${name} has no '${k}'`);
    text = text.replace(re, `${k}: ${v}`);
  }
  return text;
}

/** A working folder as the original's user has it: data/ with the memmaps, the two configs. */
function workFolder(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'semdedup-cli-'));
  mkdirSync(path.join(dir, 'data'));
  writeFileSync(path.join(dir, 'data', 'embs_memory.npy'), Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  writeIdsMemmap(path.join(dir, 'data', 'paths_memory.npy'), IDS, 24);
  writeFileSync(
    path.join(dir, 'clustering_configs.yaml'),
    originalConfig('clustering_configs.yaml', {
      emb_memory_loc: '"data/embs_memory.npy"',
      paths_memory_loc: '"data/paths_memory.npy"',
      sorted_clusters_file_loc: '"output/sorted_clusters"',
      save_folder: '"output"',
      path_str_dtype: '"S24"',
      ncentroids: String(K),
      dataset_size: ` ${N}`,
      emb_size: String(DIM),
      niter: '50',
      seed: '1234',
    }),
  );
  writeFileSync(
    path.join(dir, 'semdedup_configs.yaml'),
    originalConfig('semdedup_configs.yaml', {
      save_folder: '"output"',
      sorted_clusters_path: '"output/sorted_clusters"',
      num_clusters: String(K),
      embs_memory_loc: '"data/embs_memory.npy"',
      dataset_size: String(N),
      emd_size: String(DIM),
      which_to_keep: '"hard"',
      seed: '1234',
    }),
  );
  return dir;
}

function lines(file: string): string[] {
  const t = readFileSync(file, 'utf8');
  return t === '' ? [] : t.split('\n');
}

/** The float64 reference of steps 3–5 given the engine's step-2 files: kept ids per eps. */
function referenceKept(out: string, epsList: number[]): Map<number, string[]> {
  const nearest = readNpy(path.join(out, 'nearest_cent.npy')).data as BigInt64Array;
  const dist = readNpy(path.join(out, 'dist_to_cent.npy')).data as Float32Array;
  const near = Array.from(nearest, Number);
  const key = Array.from(dist, (v) => Math.fround(1 - v)); // cosine + spherical: 1 − inner product
  const clusters = refRank(near, key, K, true);
  const Ms = clusters.map((rows) => refMaxSim(X, DIM, rows).M);
  const res = new Map<number, string[]>();
  for (const eps of epsList) res.set(eps, refExtract(clusters, Ms.map((M) => refDecisions(M, eps)), IDS).kept);
  return res;
}

const ID_SET = new Set(IDS);

/**
 * A working folder after the original's step-by-step commands (cluster, sort, dedup --eps-list
 * 0.01,0.05, extract --eps 0.05 --output kept.txt): each test that reads such results makes its own.
 */
function stepByStep(): string {
  const w = workFolder();
  ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '-q'], w), 'cluster');
  ok(semdedup(['sort', '--config', 'clustering_configs.yaml', '-q'], w), 'sort');
  ok(semdedup(['dedup', '--config', 'semdedup_configs.yaml', '--eps-list', '0.01,0.05', '-q'], w), 'dedup');
  ok(semdedup(['extract', '--config', 'semdedup_configs.yaml', '--eps', '0.05', '--output', 'kept.txt', '-q'], w), 'extract');
  return w;
}

// ---------------------------------------------------------------------------------------------
// Step by step, exactly as the original's user types it.

test('cli: cluster --config clustering_configs.yaml writes the original three files', () => {
  const W = workFolder();
  const OUT = path.join(W, 'output');
  ok(semdedup(['cluster', '--config', 'clustering_configs.yaml'], W), 'cluster');
  const c = readNpy(path.join(OUT, 'kmeans_centroids.npy'));
  assert.equal(c.header.descr, '<f4');
  assert.deepEqual(c.header.shape, [K, DIM]);
  const nc = readNpy(path.join(OUT, 'nearest_cent.npy'));
  assert.equal(nc.header.descr, '<i8');
  assert.deepEqual(nc.header.shape, [N]);
  const dc = readNpy(path.join(OUT, 'dist_to_cent.npy'));
  assert.equal(dc.header.descr, '<f4');
  assert.deepEqual(dc.header.shape, [N]);

  // Spherical k-means: unit centroids; every row assigned to its largest inner product, which
  // dist_to_cent holds.
  const C = c.data as Float32Array;
  for (let j = 0; j < K; j++) {
    let s = 0;
    for (let t = 0; t < DIM; t++) s += C[j * DIM + t]! ** 2;
    assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-4, `centroid ${j} has norm ${Math.sqrt(s)}`);
  }
  const ref = refAssign(X, N, DIM, C, K, true);
  const nearest = nc.data as BigInt64Array;
  const dist = dc.data as Float32Array;
  const used = new Set<number>();
  for (let i = 0; i < N; i++) {
    const c = Number(nearest[i]);
    used.add(c);
    assert.ok(c >= 0 && c < K);
    assert.ok(Math.abs(dist[i]! - ref.dist[i]!) <= 1e-5, `row ${i}: dist_to_cent ${dist[i]} but max inner product ${ref.dist[i]}`);
    if (c !== ref.nearest[i]) {
      let s = 0;
      for (let t = 0; t < DIM; t++) s += X[i * DIM + t]! * C[c * DIM + t]!;
      assert.ok(Math.abs(s - ref.dist[i]!) <= 1e-5, `row ${i}: nearest_cent ${c}, reference ${ref.nearest[i]}`);
    }
  }
  assert.ok(used.size >= K - 1, 'the clusters are used');
});

test('cli: sort, dedup --eps-list 0.01,0.05 and extract --eps 0.05 --output kept.txt exit 0', () => {
  const W = workFolder();
  ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '-q'], W), 'cluster');
  ok(semdedup(['sort', '--config', 'clustering_configs.yaml'], W), 'sort');
  const d = ok(semdedup(['dedup', '--config', 'semdedup_configs.yaml', '--eps-list', '0.01,0.05'], W), 'dedup');
  assert.match(d.stdout, /eps 0\.01: kept \d+, removed \d+/);
  assert.match(d.stdout, /eps 0\.05: kept \d+, removed \d+/);
  const e = ok(semdedup(['extract', '--config', 'semdedup_configs.yaml', '--eps', '0.05', '--output', 'kept.txt'], W), 'extract');
  assert.ok(existsSync(path.join(W, 'kept.txt')), 'kept.txt is written relative to the working folder');
  const kept = lines(path.join(W, 'kept.txt'));
  const m = /eps 0\.05: kept (\d+), removed (\d+)/.exec(e.stdout);
  assert.ok(m, e.stdout);
  assert.equal(kept.length, Number(m[1]));
  assert.equal(Number(m[1]) + Number(m[2]), N);
  assert.ok(Number(m[2]) >= ds.plan.nDup * 0.95, `removed ${m[2]}, planted duplicates ${ds.plan.nDup}`);
  assert.equal(new Set(kept).size, kept.length, 'kept.txt has no repeated line');
});

test('cli: kept.txt from extract --config semdedup_configs.yaml holds the ids of the S24 paths file', () => {
  // The original's extract writes the paths (ids) of the kept examples, and its user reads the
  // ids from the paths memmap named in clustering_configs.yaml. Row numbers are not ids.
  const W = stepByStep();
  const OUT = path.join(W, 'output');
  const kept = lines(path.join(W, 'kept.txt'));
  const notIds = kept.filter((l) => !ID_SET.has(l));
  assert.equal(notIds.length, 0, `${notIds.length} of ${kept.length} lines of kept.txt are not ids from data/paths_memory.npy, e.g. ${JSON.stringify(notIds.slice(0, 3))}`);
  assert.deepEqual(kept, referenceKept(OUT, [0.05]).get(0.05), 'kept.txt is the float64 reference list');
});

test('cli: extract with both config files writes the reference kept ids', () => {
  const W = stepByStep();
  const OUT = path.join(W, 'output');
  ok(semdedup(['extract', '--config', 'clustering_configs.yaml', '--config', 'semdedup_configs.yaml', '--eps', '0.05', '--output', 'kept-ids.txt'], W), 'extract');
  const kept = lines(path.join(W, 'kept-ids.txt'));
  assert.ok(kept.every((l) => ID_SET.has(l)), 'every line is an id');
  assert.deepEqual(kept, referenceKept(OUT, [0.05]).get(0.05));
  ok(semdedup(['extract', '--config', 'clustering_configs.yaml', '--config', 'semdedup_configs.yaml', '--eps', '0.01', '--output', 'kept-0.01.txt'], W), 'extract 0.01');
  assert.deepEqual(lines(path.join(W, 'kept-0.01.txt')), referenceKept(OUT, [0.01]).get(0.01));
});

test('cli: run --config clustering_configs.yaml --config semdedup_configs.yaml in a fresh folder', () => {
  // Compared with the step-by-step commands of its own second folder.
  const W = stepByStep();
  const OUT = path.join(W, 'output');
  const R = workFolder();
  const r = ok(semdedup(['run', '--config', 'clustering_configs.yaml', '--config', 'semdedup_configs.yaml', '--eps-list', '0.01,0.05'], R), 'run');
  assert.match(r.stdout, /eps 0\.05: kept \d+/);
  const out = path.join(R, 'output');
  for (const f of ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy', 'kept_eps0.01.txt', 'kept_eps0.05.txt'])
    assert.ok(existsSync(path.join(out, f)), `${f} in the output folder`);
  // Same seed, same data: the same centroids and assignment as the step-by-step run.
  assert.deepEqual(readFileSync(path.join(out, 'kmeans_centroids.npy')), readFileSync(path.join(OUT, 'kmeans_centroids.npy')), 'centroids');
  assert.deepEqual(readFileSync(path.join(out, 'nearest_cent.npy')), readFileSync(path.join(OUT, 'nearest_cent.npy')), 'nearest_cent');
  const ref = referenceKept(out, [0.01, 0.05]);
  for (const eps of [0.01, 0.05]) {
    const kept = lines(path.join(out, `kept_eps${eps}.txt`));
    assert.ok(kept.every((l) => ID_SET.has(l)), `kept_eps${eps}.txt holds ids`);
    assert.deepEqual(kept, ref.get(eps), `kept_eps${eps}.txt is the reference list`);
  }
  assert.equal(
    readFileSync(path.join(out, 'kept_eps0.05.txt'), 'utf8'),
    readFileSync(path.join(W, 'kept.txt'), 'utf8'),
    'kept_eps0.05.txt from run equals kept.txt from the step-by-step commands',
  );
});

// ---------------------------------------------------------------------------------------------
// Resume and given centroids.

test('cli: rerunning cluster reuses the existing centroids', () => {
  const W = workFolder();
  const OUT = path.join(W, 'output');
  ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '-q'], W), 'cluster');
  const file = path.join(OUT, 'kmeans_centroids.npy');
  const before = readFileSync(file);
  const nearestBefore = readFileSync(path.join(OUT, 'nearest_cent.npy'));
  const r = ok(semdedup(['cluster', '--config', 'clustering_configs.yaml'], W), 'cluster again');
  assert.match(r.stdout + r.stderr, /reus/i, `the output says the centroids are reused:\n${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stdout + r.stderr, /k-means: k=/, 'no training');
  assert.deepEqual(readFileSync(file), before, 'centroid bytes unchanged');
  assert.deepEqual(readFileSync(path.join(OUT, 'nearest_cent.npy')), nearestBefore);
  const j = JSON.parse(ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '--json', '-q'], W), 'cluster --json').stdout) as Record<string, unknown>;
  assert.equal(j.centroidsFrom, 'reused');
});

test('cli: cluster --centroids FILE uses the given centroids (also over existing ones)', () => {
  const G = workFolder();
  // Given centroids: ten data rows, one from each planted cluster.
  const given = new Float32Array(K * DIM);
  const seen = new Set<number>();
  let j = 0;
  for (let i = 0; i < N && j < K; i++) {
    const l = ds.plan.label[i]!;
    if (ds.plan.dupOf[i]! >= 0 || seen.has(l)) continue;
    seen.add(l);
    given.set(X.subarray(i * DIM, (i + 1) * DIM), j * DIM);
    j++;
  }
  assert.equal(j, K);
  writeNpy(path.join(G, 'given.npy'), given, { shape: [K, DIM] });
  // First a trained run in this folder, so that centroids and an assignment exist already.
  ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '-q'], G), 'cluster (trained)');
  const r = ok(semdedup(['cluster', '--config', 'clustering_configs.yaml', '--centroids', 'given.npy'], G), 'cluster --centroids');
  assert.match(r.stdout, /given/, r.stdout);
  const out = path.join(G, 'output');
  assert.deepEqual(Array.from(readNpy(path.join(out, 'kmeans_centroids.npy')).data as Float32Array), Array.from(given), 'kmeans_centroids.npy holds the given centroids');
  const ref = refAssign(X, N, DIM, given, K, true);
  const nearest = readNpy(path.join(out, 'nearest_cent.npy')).data as BigInt64Array;
  const dist = readNpy(path.join(out, 'dist_to_cent.npy')).data as Float32Array;
  let differ = 0;
  for (let i = 0; i < N; i++) {
    if (Number(nearest[i]) !== ref.nearest[i]) differ++;
    assert.ok(Math.abs(dist[i]! - ref.dist[i]!) <= 1e-5, `row ${i}: dist ${dist[i]} vs ${ref.dist[i]} for the given centroids`);
  }
  assert.equal(differ, 0, `${differ} rows are not assigned to their nearest given centroid`);
  // The rest of the pipeline runs on them.
  ok(semdedup(['sort', '--config', 'clustering_configs.yaml', '-q'], G), 'sort');
  ok(semdedup(['dedup', '--config', 'semdedup_configs.yaml', '--eps-list', '0.05', '-q'], G), 'dedup');
  ok(semdedup(['extract', '--config', 'clustering_configs.yaml', '--config', 'semdedup_configs.yaml', '--eps', '0.05', '--output', 'kept.txt', '-q'], G), 'extract');
  assert.deepEqual(lines(path.join(G, 'kept.txt')), referenceKept(out, [0.05]).get(0.05));
});

// ---------------------------------------------------------------------------------------------
// info, example, --json, config-doc.

test('cli: info --json reports version, faiss, blasCore, threads, cpuFeatures, cuda', () => {
  const W = mkdtempSync(path.join(tmpdir(), 'semdedup-cli-info-'));
  const r = ok(semdedup(['info', '--json'], W), 'info --json');
  const info = JSON.parse(r.stdout) as Record<string, unknown>;
  assert.equal(typeof info.version, 'string');
  assert.match(info.version as string, /^\d+\.\d+\.\d+/);
  assert.equal(typeof info.faiss, 'string');
  assert.match(info.faiss as string, /^\d+\.\d+/);
  assert.equal(typeof info.blasCore, 'string');
  assert.ok((info.blasCore as string).length > 0);
  assert.notEqual(info.blasCore, 'Prescott', 'OpenBLAS must not fall back to its generic Prescott kernel');
  assert.equal(typeof info.threads, 'number');
  assert.ok((info.threads as number) >= 1);
  assert.equal(typeof info.cpuFeatures, 'string');
  const cuda = info.cuda as Record<string, unknown>;
  assert.equal(typeof cuda, 'object');
  assert.equal(typeof cuda.compiled, 'boolean');
  assert.equal(typeof cuda.available, 'boolean');
  if (!cuda.available) assert.equal(typeof cuda.reason, 'string');
  // The human form lists the same keys.
  const h = ok(semdedup(['info'], W), 'info');
  for (const k of ['version', 'faiss', 'blasCore', 'threads', 'cpuFeatures', 'cuda']) assert.match(h.stdout, new RegExp(`^${k}\\b`, 'm'));
});

test('cli: info --sgemm measures sgemm and, where the CPU has one, the integer filter the distance passes use', () => {
  const W = mkdtempSync(path.join(tmpdir(), 'semdedup-cli-info-sgemm-'));
  const info = JSON.parse(ok(semdedup(['info', '--sgemm', '--json'], W), 'info --sgemm --json').stdout) as Record<string, unknown>;
  assert.ok((info.sgemmGflops as number) > 0);
  if (/\bavx2\b/.test(info.cpuFeatures as string)) {
    assert.equal(info.cpuFilter, 'avx2-int8');
    assert.ok((info.filterGops as number) > 0);
    // the ratio printed is the two rates printed (rounded)
    assert.ok(Math.abs((info.filterVsSgemm as number) - (info.filterGops as number) / (info.sgemmGflops as number)) < 0.02);
  } else {
    assert.equal(info.filterGops, undefined);
  }
});

test('cli: example --dir runs and finds the planted duplicates (recall >= 99% at eps 0.01)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'semdedup-cli-example-'));
  const W = dir;
  const r = ok(tools(['example', '--dir', dir, '--json', '-q'], W), 'example --json');
  const rep = JSON.parse(r.stdout) as { perEps: { eps: number; recall: number; precision: number }[]; outputDir: string };
  const e = rep.perEps.find((x) => x.eps === 0.01);
  assert.ok(e, 'eps 0.01 is reported');
  assert.ok(e.recall >= 0.99, `recall at eps 0.01 is ${e.recall}`);
  assert.ok(existsSync(path.join(dir, 'output', 'kept_eps0.01.txt')));
  // The human form says the same.
  const h = ok(tools(['example', '--dir', dir, '-q'], W), 'example');
  const m = /eps 0\.01: .*recall ([\d.]+)%/.exec(h.stdout);
  assert.ok(m, h.stdout);
  assert.ok(Number(m[1]) >= 99, h.stdout);
});

test('cli: --json output parses for every step', () => {
  const J = workFolder();
  const parse = (args: string[]) => {
    const r = ok(semdedup([...args, '--json', '-q'], J), args.join(' '));
    try {
      return JSON.parse(r.stdout) as Record<string, unknown>;
    } catch (e) {
      assert.fail(`${args.join(' ')} --json printed no JSON: ${r.stdout}\n${(e as Error).message}`);
    }
  };
  const c = parse(['cluster', '--config', 'clustering_configs.yaml']);
  assert.equal(c.k, K);
  assert.equal(c.centroidsFrom, 'trained');
  const s = parse(['sort', '--config', 'clustering_configs.yaml']);
  assert.equal(s.rows, N);
  const d = parse(['dedup', '--config', 'semdedup_configs.yaml', '--eps-list', '0.01,0.05']);
  const summary = d.summary as { eps: number; kept: number; removed: number }[];
  assert.deepEqual(summary.map((x) => x.eps), [0.01, 0.05]);
  for (const x of summary) assert.equal(x.kept + x.removed, N);
  const e = parse(['extract', '--config', 'semdedup_configs.yaml', '--eps', '0.05', '--output', 'k.txt']);
  assert.equal((e.summary as { kept: number }).kept, summary[1]!.kept);
  const r = parse(['run', '--config', 'clustering_configs.yaml', '--config', 'semdedup_configs.yaml', '--eps-list', '0.05']);
  assert.ok(Array.isArray(r.outputs));
  const info = JSON.parse(ok(semdedup(['info', '--json'], J), 'info --json').stdout) as Record<string, unknown>;
  assert.equal(typeof info.version, 'string');
  // An error with --json still exits non-zero with the message on stderr.
  const bad = semdedup(['dedup', '--config', 'semdedup_configs.yaml', '--eps-list', '2', '--json'], J);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /eps/);
});

test('cli: config-doc lists ncentroids', () => {
  const W = mkdtempSync(path.join(tmpdir(), 'semdedup-cli-doc-'));
  const r = ok(semdedup(['config-doc'], W), 'config-doc');
  assert.match(r.stdout, /ncentroids/);
  assert.match(r.stdout, /num_clusters/);
  assert.match(r.stdout, /emb_memory_loc/);
  assert.match(r.stdout, /^\| `k` \|/m);
});
