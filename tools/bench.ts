// The benchmark harness: named, generated, seeded workloads; per-stage wall time, GFLOP/s,
// percent of this machine's measured sgemm rate, peak RSS; peers in the same run (the original
// pipeline in Python, and FAISS k-means alone); a check that our kept sets equal the peer's given
// the same centroids before any speed is reported; a JSON record and bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createEmbeddingsFile } from '../src/embeddings.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { loadNative, userEnv } from '../src/native/index.js';
import { SynthDataset, type SynthOptions } from './synth.js';
import { computeCentroids } from '../src/steps/cluster.js';
import { prepareEmbeddings } from '../src/steps/check.js';
import { assignAndSortClusters } from '../src/steps/sort.js';
import { semdedup } from '../src/steps/dedup.js';
import { extractPrunedData } from '../src/steps/extract.js';
import { atomicWriteFile } from '../src/io/atomic.js';
import { outputs } from '../src/layout.js';

export interface Workload {
  name: string;
  n: number;
  dim: number;
  k: number;
  niter: number;
  eps: number[];
  synth: Partial<SynthOptions>;
  /** Cluster with the generator's planted centres instead of training (skew: keeps the giant cluster whole). */
  plantedCentroids: boolean;
}

export const WORKLOADS: Record<string, Workload> = {
  w1: { name: 'w1', n: 1_000_000, dim: 512, k: 1000, niter: 20, eps: [0.01, 0.05, 0.1], synth: { clusters: 1000, seed: 11, sizeDistribution: 'uniform' }, plantedCentroids: false },
  skew: { name: 'skew', n: 1_000_000, dim: 512, k: 1000, niter: 20, eps: [0.01, 0.05, 0.1], synth: { clusters: 1000, seed: 12, sizeDistribution: 'heavy' }, plantedCentroids: true },
};

/** The repository (or installed package) root: dist/tools/bench.js is two folders below it. */
const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
const PEER_SCRIPT = join(root, 'bench', 'peer', 'original_pipeline.py');

/**
 * The Python that runs the peer: SEMDEDUP_PYTHON when set, else the first of the system's
 * /usr/bin/python3 (where scripts/setup.sh installs the distribution's packages) and `python3` on
 * the PATH that imports numpy, faiss, torch and pandas; undefined when none does (the peers are
 * then skipped with a log line).
 */
export function peerPython(): string | undefined {
  const cands = process.env.SEMDEDUP_PYTHON ? [process.env.SEMDEDUP_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const c of cands) {
    const r = spawnSync(c, ['-c', 'import numpy, faiss, torch, pandas'], { encoding: 'utf8', env: userEnv() });
    if (r.status === 0) return c;
  }
  return undefined;
}
let PY = 'python3';

export interface StageRecord {
  seconds: number;
  /** Work of the exact algorithm (GFLOP). */
  gflop?: number;
  /** Work actually issued, when pruning skipped some (GFLOP). */
  issuedGflop?: number;
  prunedFraction?: number;
}

export interface BenchRecord {
  workload: Workload;
  machine: { cpu: string; cores: number; memGiB: number; blasCore: string; faiss: string; node: string };
  sgemmGflops: number;
  ours: {
    /** Stage times by our in-process timers; total: their sum (the pipeline without Node's start and module loads). */
    stages: Record<string, StageRecord>; total: number; peakRssMiB: number; largestCluster: number; rechecked: number; computedDedupGflop: number; runs?: number;
    /** Wall seconds of the whole child process that ran the pipeline, spawn to exit (Node's start, module loads, the addon's load included); median of the runs. */
    processSeconds?: number;
    /** k-means: iterations run, the last objective, and the rows re-scored in float64 (training, all iterations; assignment). */
    kmeans?: { iterations: number; objective?: number; rescoredTrain: number; rescoredAssign: number };
  };
  peer?: {
    /** The original's own stage timers (after its imports); total: their sum. */
    stages: Record<string, number | null>; total: number; peakRssMiB: number; note?: string;
    /** Wall seconds of the processes run for the peer, each spawn to exit (Python's start and imports of numpy, faiss, torch, pandas included), summed; median of the runs. */
    processSeconds?: number;
    /** How many times the peer ran (each stage and the whole processes: the median, as ours). */
    runs?: number;
  };
  /** FAISS k-means alone; its last objective against ours (the same training sample: comparable). */
  faissAlone?: { train: number; assign: number; total: number; objective?: number; ourObjective?: number };
  /** Kept counts against the peer's given our centroids: in all, per cluster, and how many kept ids differ (which member of a group is kept: ours decides on exact values, the original on float32 ones). */
  keptEqual?: { eps: number; ours: number; peer: number; clustersEqual: boolean; differing: number }[];
  /** Our pipeline again under other OpenBLAS kernels and thread counts: its outputs against the main run's. */
  kernels?: { kernel: string; threads: number; seconds: number; identical: boolean; files: number; differing: string[]; mMaxDiff: number }[];
  date: string;
}

function dataPaths(w: Workload, outDir: string) {
  const dir = join(outDir, w.name);
  const tag = `${w.n}x${w.dim}-s${w.synth.seed}-${w.synth.sizeDistribution}-c${w.synth.clusters}`;
  return { dir, emb: join(dir, `emb-${tag}.f32`), centres: join(dir, `centres-${tag}.npy`), stamp: join(dir, `emb-${tag}.done`) };
}

/** Generates (or reuses) the workload's embeddings as a raw float32 memmap. */
export function prepareData(w: Workload, outDir: string, log: (l: string) => void): { emb: string; centres: string } {
  const p = dataPaths(w, outDir);
  mkdirSync(p.dir, { recursive: true });
  if (existsSync(p.stamp) && existsSync(p.emb) && statSync(p.emb).size === w.n * w.dim * 4) return { emb: p.emb, centres: p.centres };
  log(`generating ${w.name}: ${w.n} × ${w.dim} (${((w.n * w.dim * 4) / 2 ** 30).toFixed(2)} GiB) ...`);
  const t = performance.now();
  const ds = new SynthDataset({ n: w.n, dim: w.dim, ...w.synth });
  const emb = createEmbeddingsFile(p.emb, w.n, w.dim, { format: 'memmap' });
  const view = emb.view() as Float32Array;
  for (const [s, e, buf] of ds.chunks(16384)) view.set(buf.subarray(0, (e - s) * w.dim), s * w.dim);
  emb.close();
  writeNpy(p.centres, ds.plan.centres, { shape: [w.synth.clusters ?? w.k, w.dim] });
  writeFileSync(p.stamp, 'ok\n');
  log(`generated in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  return { emb: p.emb, centres: p.centres };
}

/** Runs our pipeline stage by stage in this process (the parent runs it in a fresh child for RSS). */
export async function runOursStages(opts: { emb: string; n: number; dim: number; k: number; niter: number; eps: number[]; out: string; centroids?: string; impl?: 'engine' | 'faiss'; kmeansOnly?: boolean; threads?: number }) {
  const threads = opts.threads ?? 0;
  const stages: Record<string, StageRecord> = {};
  const spec = { path: opts.emb, format: 'memmap' as const, count: opts.n, dim: opts.dim };
  const t0 = performance.now();
  const emb = await prepareEmbeddings(spec, { outputDir: opts.out, normalize: 'auto' });
  stages.check = { seconds: (performance.now() - t0) / 1000 };
  const c = await computeCentroids({ embeddings: emb, outputDir: opts.out, k: opts.k, niter: opts.niter, seed: 1234, spherical: true, reuseCentroids: false, kmeansImpl: opts.impl ?? 'engine', threads, ...(opts.centroids ? { centroids: opts.centroids } : {}) });
  const nTrain = Math.min(opts.n, opts.k * 256);
  if (!opts.centroids) {
    // Lloyd-equivalent work (what the exact algorithm does without pruning), and what was issued.
    const full = (2 * opts.niter * nTrain * opts.k * opts.dim) / 1e9;
    // centroid scores the searches computed (partial searches score fewer than k), plus one per kept row
    const columns = c.searchedColumns > 0 ? c.searchedColumns : c.searchedRows * opts.k;  // backends that count no columns search in full
    const issued = c.searchedRows + c.prunedRows > 0 ? (2 * (columns + c.prunedRows) * opts.dim) / 1e9 : full;
    stages.train = { seconds: c.seconds.train, gflop: full, issuedGflop: issued, prunedFraction: c.searchedRows + c.prunedRows > 0 ? c.prunedRows / (c.searchedRows + c.prunedRows) : 0 };
  }
  stages.assign = { seconds: c.seconds.assign, gflop: (2 * opts.n * opts.k * opts.dim) / 1e9 };
  const kmeans = { iterations: c.iterations, ...(c.objective.length ? { objective: c.objective[c.objective.length - 1]! } : {}), rescoredTrain: c.rescoredRows.train, rescoredAssign: c.rescoredRows.assign };
  if (opts.kmeansOnly) emb.close();
  if (opts.kmeansOnly) return { stages, total: (performance.now() - t0) / 1000, peakRssMiB: process.resourceUsage().maxRSS / 1024, largestCluster: 0, rechecked: 0, computedDedupGflop: 0, kmeans };
  let t = performance.now();
  const s = await assignAndSortClusters({ outputDir: opts.out, simMetric: 'cosine', keepHard: true, spherical: true, threads });
  stages.sort = { seconds: (performance.now() - t) / 1000 };
  let largest = 0;
  for (let i = 0; i < s.k; i++) largest = Math.max(largest, Number(s.offsets[i + 1]! - s.offsets[i]!));
  t = performance.now();
  const d = await semdedup({ embeddings: emb, outputDir: opts.out, whichToKeep: 'hard', epsList: opts.eps, seed: 1234, threads });
  emb.close();
  stages.dedup = { seconds: (performance.now() - t) / 1000, gflop: d.stats.usefulFlops / 1e9 };
  t = performance.now();
  for (const e of opts.eps) await extractPrunedData({ outputDir: opts.out, eps: e, output: outputs.keptList(opts.out, e) });
  stages.extract = { seconds: (performance.now() - t) / 1000 };
  const total = (performance.now() - t0) / 1000;
  return { stages, total, peakRssMiB: process.resourceUsage().maxRSS / 1024, largestCluster: largest, rechecked: d.stats.rechecked, computedDedupGflop: d.stats.computedFlops / 1e9, kmeans };
}

/** Runs a child process to its exit; its wall seconds, spawn to exit. */
function timedSpawn(cmd: string, args: string[], opts: Parameters<typeof spawnSync>[2] & { encoding: 'utf8' }) {
  const t = performance.now();
  const r = spawnSync(cmd, args, opts);
  return { r, seconds: (performance.now() - t) / 1000 };
}

/** Runs one process of the peer: its last stdout line (the stage timers) and its wall seconds, spawn to exit. */
function runPeer(args: string[], log: (l: string) => void): { out: Record<string, unknown>; seconds: number } {
  log(`peer: ${PY} bench/peer/original_pipeline.py ${args.join(' ')}`);
  const { r, seconds } = timedSpawn(PY, [PEER_SCRIPT, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, env: userEnv() });
  if (r.status !== 0) throw new Error(`peer failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const lines = r.stdout.trim().split('\n');
  return { out: JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>, seconds };
}

/** FAISS k-means alone, through the FAISS this engine links (faiss::Clustering + IndexFlat search). */
function faissAlone(emb: string, w: Workload, ours: BenchRecord['ours'], outDir: string, log: (l: string) => void): NonNullable<BenchRecord['faissAlone']> {
  log('peer: FAISS k-means alone (faiss::Clustering through the linked FAISS)');
  const out = join(outDir, w.name, 'faiss');
  const r = spawnSync(process.execPath, [join(root, 'dist', 'tools', 'cli.js'), 'bench-child', JSON.stringify({ emb, n: w.n, dim: w.dim, k: w.k, niter: w.niter, eps: w.eps, out, impl: 'faiss', kmeansOnly: true })], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`FAISS peer failed: ${r.stderr.slice(-2000)}`);
  const rec = JSON.parse(r.stdout.trim().split('\n').pop()!) as BenchRecord['ours'];
  const train = rec.stages.train?.seconds ?? 0;
  const assign = rec.stages.assign?.seconds ?? 0;
  const ourObjective = ours.kmeans?.objective;
  return { train, assign, total: train + assign, ...(rec.kmeans?.objective !== undefined ? { objective: rec.kmeans.objective } : {}), ...(ourObjective !== undefined ? { ourObjective } : {}) };
}

/** The files of an output folder, run records left out (manifest, summary, lock). */
function outputFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d)) {
      const p = join(d, e);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.filter((f) => !['manifest.json', 'summary.json', 'lock'].includes(basename(f))).sort();
}

/**
 * Our pipeline under each OpenBLAS kernel (OPENBLAS_CORETYPE) with 1 and 2 threads, each output
 * compared byte for byte with the main run's; M.npy and M_row.npy (step 4's float32 maxima as
 * computed) by their largest difference.
 */
function kernelRuns(w: Workload, data: { emb: string; centres: string }, ourOut: string, kernels: string[], outDir: string, log: (l: string) => void): NonNullable<BenchRecord['kernels']> {
  const rows: NonNullable<BenchRecord['kernels']> = [];
  const want = outputFiles(ourOut);
  for (const kernel of kernels)
    for (const threads of [1, 2]) {
      const out = join(outDir, w.name, `kernel-${kernel}-${threads}`);
      log(`ours under OPENBLAS_CORETYPE=${kernel}, ${threads} thread(s)`);
      const args = { emb: data.emb, n: w.n, dim: w.dim, k: w.k, niter: w.niter, eps: w.eps, out, threads, ...(w.plantedCentroids ? { centroids: data.centres } : {}) };
      const r = spawnSync(process.execPath, [join(root, 'dist', 'tools', 'cli.js'), 'bench-child', JSON.stringify(args)], { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...userEnv(), OPENBLAS_CORETYPE: kernel } });
      if (r.status !== 0) throw new Error(`our pipeline under ${kernel} failed: ${r.stderr.slice(-3000)}`);
      const child = JSON.parse(r.stdout.trim().split('\n').pop()!) as BenchRecord['ours'];
      const differing: string[] = [];
      let mMaxDiff = 0;
      for (const f of want) {
        if (basename(f) === 'M.npy') {
          const a = readNpy(join(ourOut, f)).data as Float64Array;
          const b = readNpy(join(out, f)).data as Float64Array;
          for (let i = 0; i < a.length; i++) mMaxDiff = Math.max(mMaxDiff, Math.abs(a[i]! - b[i]!));
          continue;
        }
        if (basename(f) === 'M_row.npy') continue;
        if (!existsSync(join(out, f)) || !readFileSync(join(ourOut, f)).equals(readFileSync(join(out, f)))) differing.push(f);
      }
      rows.push({ kernel, threads, seconds: child.total, identical: differing.length === 0, files: want.length - 2, differing, mMaxDiff });
    }
  return rows;
}

function machine(): BenchRecord['machine'] {
  const i = loadNative().info();
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), blasCore: i.blasCore, faiss: i.faiss, node: process.version };
}

export async function benchWorkload(
  w: Workload,
  opts: { outDir: string; peers: boolean; log: (l: string) => void; sgemm: number; repeat?: number; kernels?: string[] },
): Promise<BenchRecord> {
  const { log } = opts;
  const data = prepareData(w, opts.outDir, log);
  const ourOut = join(opts.outDir, w.name, 'ours');
  // Our run in a fresh process so that peak RSS is the pipeline's alone; repeated runs give the
  // median of each stage (these machines are noisy).
  const childArgs = [join(root, 'dist', 'tools', 'cli.js'), 'bench-child', JSON.stringify({ emb: data.emb, n: w.n, dim: w.dim, k: w.k, niter: w.niter, eps: w.eps, out: ourOut, ...(w.plantedCentroids ? { centroids: data.centres } : {}) })];
  const runs: BenchRecord['ours'][] = [];
  for (let i = 0; i < Math.max(1, opts.repeat ?? 1); i++) {
    log(`ours: ${w.name} (run ${i + 1})`);
    // A fresh output folder each run: a folder left by an earlier run would resume its steps.
    rmSync(ourOut, { recursive: true, force: true });
    const { r, seconds } = timedSpawn(process.execPath, childArgs, { encoding: 'utf8', maxBuffer: 1 << 26 });
    if (r.status !== 0) throw new Error(`our pipeline failed: ${r.stderr.slice(-3000)}`);
    runs.push({ ...(JSON.parse(r.stdout.trim().split('\n').pop()!) as BenchRecord['ours']), processSeconds: seconds });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const ours: BenchRecord['ours'] = {
    ...runs[0]!, runs: runs.length, total: median(runs.map((r) => r.total)), processSeconds: median(runs.map((r) => r.processSeconds!)),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
  };
  ours.stages = Object.fromEntries(Object.entries(runs[0]!.stages).map(([k, st]) => [k, { ...st, seconds: median(runs.map((r) => r.stages[k]!.seconds)) }]));
  const rec: BenchRecord = { workload: w, machine: machine(), sgemmGflops: opts.sgemm, ours, date: new Date().toISOString() };
  if (opts.kernels?.length) rec.kernels = kernelRuns(w, data, ourOut, opts.kernels, opts.outDir, log);
  if (!opts.peers) return rec;
  if (!existsSync(PEER_SCRIPT)) {
    log(`peers skipped: ${PEER_SCRIPT} is not here (it ships with the repository, not the package)`);
    return rec;
  }
  const py = peerPython();
  if (!py) {
    log('peers skipped: no Python with numpy, faiss, torch and pandas (set SEMDEDUP_PYTHON to one)');
    return rec;
  }
  PY = py;

  const peerOut = join(opts.outDir, w.name, 'peer');
  const base = ['--emb', data.emb, '--n', String(w.n), '--d', String(w.dim), '--k', String(w.k), '--niter', String(w.niter), '--seed', '1234', '--spherical', '--eps-list', w.eps.join(','), '--out', peerOut];
  let note: string | undefined;
  // The peer runs as many times as ours (these machines are noisy): each stage's median, and the
  // median of its whole processes' summed times.
  const peerRuns: { stages: Record<string, number | null>; processSeconds: number }[] = [];
  let peerRss = 0;
  const largest = ours.largestCluster;
  const needGiB = (largest * largest * 4 * 2) / 2 ** 30; // X @ X.T and its triu copy
  for (let i = 0; i < Math.max(1, opts.repeat ?? 1); i++) {
    const stages: Record<string, number | null> = {};
    let processSeconds = 0;
    const peer = (args: string[]) => {
      const { out, seconds } = runPeer(args, log);
      processSeconds += seconds;
      return out;
    };
    if (!w.plantedCentroids) {
      const t = peer([...base, '--stages', 'kmeans_train']);
      stages.train = (t.kmeans_train as number) ?? null;
    }
    // Same centroids as ours: the peer's kept sets must equal ours before a speed is reported.
    if (needGiB > (totalmem() / 2 ** 30) * 0.7) {
      note = `the original's per-cluster n × n matrix for the largest cluster (${largest} members) needs ${needGiB.toFixed(0)} GiB: it cannot run on this machine`;
      const t = peer([...base, '--centroids', join(ourOut, 'kmeans_centroids.npy'), '--stages', 'assign,rank']);
      stages.assign = t.assign as number;
      stages.rank = t.rank as number;
      stages.semdedup = null;
      stages.extract = null;
      peerRss = Math.max(peerRss, (t.peak_rss_kib as number) / 1024);
    } else {
      const t = peer([...base, '--centroids', join(ourOut, 'kmeans_centroids.npy'), '--stages', 'assign,rank,semdedup,extract']);
      for (const s of ['assign', 'rank', 'semdedup', 'extract']) stages[s] = (t[s] as number) ?? null;
      peerRss = Math.max(peerRss, (t.peak_rss_kib as number) / 1024);
    }
    peerRuns.push({ stages, processSeconds });
  }
  const stages: Record<string, number | null> = Object.fromEntries(
    Object.keys(peerRuns[0]!.stages).map((k) => {
      const xs = peerRuns.map((r) => r.stages[k]).filter((v): v is number => typeof v === 'number');
      return [k, xs.length === peerRuns.length ? median(xs) : null];
    }),
  );
  const processSeconds = median(peerRuns.map((r) => r.processSeconds));
  if (!note) {
    // The ids are row numbers; every kept row counted in its cluster (our nearest_cent) on both sides.
    const nearest = readNpy(join(ourOut, 'nearest_cent.npy')).data as ArrayLike<number | bigint>;
    const idsOf = (file: string) => readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
    const perCluster = (ids: string[]) => {
      const c = new Map<number, number>();
      for (const id of ids) {
        const k = Number(nearest[Number(id)]);
        c.set(k, (c.get(k) ?? 0) + 1);
      }
      return c;
    };
    rec.keptEqual = w.eps.map((e) => {
      const a = idsOf(outputs.keptList(ourOut, e));
      const b = idsOf(join(peerOut, `kept_eps${e}.txt`));
      const pa = perCluster(a);
      const pb = perCluster(b);
      const clustersEqual = pa.size === pb.size && [...pa].every(([k, v]) => pb.get(k) === v);
      const inB = new Set(b);
      return { eps: e, ours: a.length, peer: b.length, clustersEqual, differing: a.filter((id) => !inB.has(id)).length };
    });
  }
  const total = Object.values(stages).reduce<number>((s, v) => s + (v ?? 0), 0);
  rec.peer = { stages, total, peakRssMiB: peerRss, processSeconds, runs: peerRuns.length, ...(note ? { note } : {}) };
  if (!w.plantedCentroids) rec.faissAlone = faissAlone(data.emb, w, ours, opts.outDir, log);
  return rec;
}

const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? '—' : x.toFixed(d));

export function formatRecord(rec: BenchRecord): string {
  const w = rec.workload;
  const o = rec.ours;
  const p = rec.peer;
  const peerKey: Record<string, string> = { train: 'train', assign: 'assign', sort: 'rank', dedup: 'semdedup', extract: 'extract' };
  const lines = [
    `### ${w.name}: ${w.n.toLocaleString('en-US')} × ${w.dim}, k = ${w.k}, niter ${w.niter}, eps ${w.eps.join('/')}${w.plantedCentroids ? ', planted centroids (heavy-tailed cluster sizes)' : ''}`,
    '',
    `Machine: ${rec.machine.cpu}, ${rec.machine.cores} cores, ${rec.machine.memGiB} GiB; OpenBLAS kernel ${rec.machine.blasCore}; FAISS ${rec.machine.faiss}; Node ${rec.machine.node}. ` +
      `Measured sgemm: **${f(rec.sgemmGflops, 1)} GFLOP/s** (2048³, ${rec.machine.cores} threads). Our times: median of ${o.runs ?? 1} run(s)${rec.peer ? `; the original's: median of ${rec.peer.runs ?? 1} run(s)` : ''}. Largest cluster: ${o.largestCluster.toLocaleString('en-US')} members. Date: ${rec.date.slice(0, 16)}Z.`,
    '',
    '| stage | ours (s) | GFLOP/s | % of sgemm | peer (s) | peer / ours | share of our total |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const [name, st] of Object.entries(o.stages)) {
    const g = st.gflop !== undefined ? (st.issuedGflop ?? st.gflop) / st.seconds : undefined;
    const ps = p?.stages[peerKey[name]!];
    lines.push(
      `| ${name} | ${f(st.seconds)} | ${g !== undefined ? f(g, 1) : ''} | ${g !== undefined ? f((100 * g) / rec.sgemmGflops, 0) + '%' : ''} | ${p ? f(ps) : ''} | ${p && ps ? f(ps / st.seconds, 1) + '×' : ''} | ${f((100 * st.seconds) / o.total, 1)}% |`,
    );
  }
  lines.push(`| **end to end** (stage sum) | **${f(o.total)}** | | | ${p ? (p.note ? 'cannot run' : `**${f(p.total)}**`) : ''} | ${p && !p.note ? `**${f(p.total / o.total, 1)}×**` : ''} | |`);
  lines.push('');
  // Two end-to-end figures: the stage sums (each side's own timers: our steps in-process; the
  // original's stage timers, which start after Python's imports) and whole processes, spawn to exit.
  if (o.processSeconds !== undefined) {
    const pp = p && !p.note ? p.processSeconds : undefined;
    lines.push(
      '| end to end | ours (s) | peer (s) | peer / ours |',
      '|---|---:|---:|---:|',
      `| stage sum: each side's own stage timers (no runtime start, no imports) | ${f(o.total)} | ${p ? (p.note ? 'cannot run' : f(p.total)) : ''} | ${p && !p.note ? f(p.total / o.total, 1) + '×' : ''} |`,
      `| whole processes, spawn to exit: ours the one child running the pipeline (Node's start and module loads included), the peer ${w.plantedCentroids ? 'its one process' : 'the sum of its 2 processes'} (Python's start and imports included) | ${f(o.processSeconds)} | ${p ? (p.note ? 'cannot run' : f(pp)) : ''} | ${pp !== undefined ? f(pp / o.processSeconds, 1) + '×' : ''} |`,
      '',
    );
  }
  lines.push(`Peak RSS: ours ${f(o.peakRssMiB, 0)} MiB${p ? `, peer ${f(p.peakRssMiB, 0)} MiB (the peer's counts the touched pages of the mapped embeddings)` : ''}. ` +
    `Dedup: ${f(o.computedDedupGflop, 0)} GFLOP issued for ${f(o.stages.dedup?.gflop, 0)} useful; ${o.rechecked} members not decided by the float32 filter (their candidates re-scored in float64; M is exact).`);
  const tr = o.stages.train;
  if (tr?.prunedFraction !== undefined)
    lines.push(`k-means training: ${f(100 * tr.prunedFraction, 1)}% of the row searches skipped by the bounds; ${f(tr.issuedGflop, 0)} GFLOP issued of the ${f(tr.gflop, 0)} the exact Lloyd iterations need (GFLOP/s above: issued work; Lloyd-equivalent rate ${f(tr.gflop! / tr.seconds, 1)} GFLOP/s).`);
  if (o.kmeans)
    lines.push(`k-means: ${o.kmeans.iterations} iterations run${o.kmeans.iterations > 0 && o.kmeans.iterations < w.niter ? ` (stopped: the last changed no assignment)` : ''}; rows re-scored in float64 (top-2 gap within the float32 pass's error bound): ${(o.kmeans.rescoredTrain ?? 0).toLocaleString('en-US')} in training (all iterations), ${(o.kmeans.rescoredAssign ?? 0).toLocaleString('en-US')} of ${w.n.toLocaleString('en-US')} in the assignment.`);
  if (rec.faissAlone) {
    const fa = rec.faissAlone;
    const rel = fa.objective !== undefined && fa.ourObjective !== undefined ? (fa.ourObjective - fa.objective) / Math.abs(fa.objective) : undefined;
    lines.push(`FAISS k-means alone (faiss::Clustering, then the exact assignment, through the linked FAISS ${rec.machine.faiss}): train ${f(fa.train)} s, assign ${f(fa.assign)} s; ours: train ${f(o.stages.train?.seconds)} s (${f(fa.train / (o.stages.train?.seconds ?? 1), 1)}× faster), assign ${f(o.stages.assign?.seconds)} s. ` +
      `Last k-means objective on the training sample: ours ${f(fa.ourObjective, 1)}, FAISS ${f(fa.objective, 1)}${rel !== undefined ? ` (relative difference ${rel.toExponential(2)})` : ''}; the centroids are not FAISS's bits (its float32 sums and BLAS rounding decide its assignments).`);
  }
  if (rec.kernels) {
    lines.push('', `Under other OpenBLAS kernels and thread counts (each output against the run above, byte for byte; M.npy by its largest difference):`, '', '| OPENBLAS_CORETYPE | threads | end to end (s) | files byte-identical | M max difference |', '|---|---:|---:|---|---:|');
    for (const k of rec.kernels)
      lines.push(`| ${k.kernel} | ${k.threads} | ${f(k.seconds)} | ${k.identical ? `all ${k.files}` : `NO: ${k.differing.join(', ')}`} | ${k.mMaxDiff.toExponential(1)} |`);
    lines.push('');
  }
  if (rec.keptEqual)
    lines.push(
      `Kept against the peer's given the same centroids (counts in all and per cluster; ids that differ: which member of a group is kept, decided here on exact values and there on float32 ones): ` +
        rec.keptEqual.map((k) => `eps ${k.eps}: ${k.ours === k.peer ? 'equal' : 'NOT equal'} (${k.ours} / ${k.peer}), per cluster ${k.clustersEqual ? 'equal' : 'NOT equal'}, ${k.differing} ids differ`).join('; ') + '.',
    );
  if (p?.note) lines.push(`Peer: ${p.note}.`);
  return lines.join('\n');
}

export function updateResults(file: string, rec: BenchRecord): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmark results\n';
  const start = `<!-- bench:${rec.workload.name} start -->`;
  const end = `<!-- bench:${rec.workload.name} end -->`;
  const block = `${start}\n${formatRecord(rec)}\n${end}`;
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  const out = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  atomicWriteFile(file, out);
}

export async function runBench(opts: { workloads: string[]; peers: boolean; outDir?: string; results?: string; n?: number; k?: number; repeat?: number; kernels?: string[]; log?: (l: string) => void }): Promise<BenchRecord[]> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`bench: ${l}\n`));
  const outDir = resolve(opts.outDir ?? join(process.cwd(), 'bench-out'));
  mkdirSync(outDir, { recursive: true });
  const sgemm = await loadNative().measureSgemm({ n: 2048, repeats: 5 });
  log(`sgemm: ${sgemm.toFixed(1)} GFLOP/s`);
  const recs: BenchRecord[] = [];
  for (const name of opts.workloads) {
    const w0 = WORKLOADS[name];
    if (!w0) throw new Error(`unknown workload '${name}' (known: ${Object.keys(WORKLOADS).join(', ')})`);
    const w = { ...w0, ...(opts.n ? { n: opts.n } : {}), ...(opts.k ? { k: opts.k } : {}) };
    const rec = await benchWorkload(w, { outDir, peers: opts.peers, log, sgemm, ...(opts.repeat ? { repeat: opts.repeat } : {}), ...(opts.kernels?.length ? { kernels: opts.kernels } : {}) });
    atomicWriteFile(join(outDir, `${w.name}-${rec.date.replace(/[:.]/g, '-')}.json`), JSON.stringify(rec, null, 2) + '\n');
    if (opts.results) updateResults(opts.results, rec);
    process.stdout.write(formatRecord(rec) + '\n\n');
    recs.push(rec);
  }
  return recs;
}

