// The built-in example: a generated dataset with planted exact and near duplicates (known
// ground truth), written in the original's formats (raw float32 memmap + S24 ids memmap), run
// through the whole pipeline, and scored against the ground truth.
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseConfigObject } from '../src/config.js';
import { createEmbeddingsFile } from '../src/embeddings.js';
import { writeIdsMemmap } from '../src/io/ids.js';
import { runAll, type RunResult } from '../src/pipeline.js';
import { SynthDataset, type SynthOptions } from './synth.js';
import type { CommonOptions } from '../src/steps/common.js';

export interface ExampleOptions extends CommonOptions {
  /** Folder for the data and the results (default ./examples-out). */
  dir?: string;
  synth?: Partial<SynthOptions>;
  k?: number;
  eps?: number[];
}

export interface ExampleReport {
  n: number;
  dim: number;
  k: number;
  plantedGroups: number;
  plantedCopies: number;
  perEps: {
    eps: number;
    removed: number;
    /** Removed rows that belong to a planted group (true positives). */
    removedPlanted: number;
    /** Planted groups with exactly one survivor. */
    groupsWithOneSurvivor: number;
    /** Planted copies that should go (group size - 1 per group) and did. */
    recall: number;
    /** Share of removed rows that are planted duplicates. */
    precision: number;
  }[];
  run: RunResult;
  dataDir: string;
  outputDir: string;
}

export async function runExample(opts: ExampleOptions = {}): Promise<ExampleReport> {
  const dir = resolve(opts.dir ?? 'examples-out');
  const dataDir = join(dir, 'data');
  const outputDir = join(dir, 'output');
  rmSync(outputDir, { recursive: true, force: true });
  mkdirSync(dataDir, { recursive: true });
  const ds = new SynthDataset({ n: 10_000, dim: 64, clusters: 20, seed: 1, ...opts.synth });
  const k = opts.k ?? ds.plan.opts.clusters;
  const embPath = join(dataDir, 'embs_memory.npy'); // a raw memmap despite the name, as in the original's configs
  const idsPath = join(dataDir, 'paths_memory.npy');
  const emb = createEmbeddingsFile(embPath, ds.n, ds.dim, { format: 'memmap' });
  const view = emb.view() as Float32Array;
  for (const [s, e, buf] of ds.chunks(16384)) view.set(buf.subarray(0, (e - s) * ds.dim), s * ds.dim);
  emb.close();
  writeIdsMemmap(idsPath, Array.from({ length: ds.n }, (_, i) => `img_${String(i).padStart(8, '0')}.jpg`), 24);
  opts.log?.(`example data: ${ds.n} × ${ds.dim} float32 in ${embPath}, ids (S24) in ${idsPath}`);

  const eps = opts.eps ?? [0.01, 0.05, 0.1];
  const cfg = parseConfigObject(
    {
      emb_memory_loc: embPath, paths_memory_loc: idsPath, path_str_dtype: 'S24', dataset_size: ds.n, emb_size: ds.dim,
      save_folder: outputDir, ncentroids: k, niter: 20, seed: 1234, Kmeans_with_cos_dist: true, sim_metric: 'cosine',
      keep_hard: true, which_to_keep: 'hard', eps_list: eps,
    },
    '<example>',
  );
  const run = await runAll(cfg, opts);

  // Score against the planted groups.
  const groups = ds.groundTruth();
  const groupOf = new Int32Array(ds.n).fill(-1);
  groups.forEach((g, gi) => {
    groupOf[g.original] = gi;
    for (const c of g.copies) groupOf[c.row] = gi;
  });
  const plantedCopies = groups.reduce((s, g) => s + g.copies.length, 0);
  const perEps = run.extract.map((x) => {
    const removed = new Uint8Array(ds.n);
    for (const r of x.removedRows) removed[Number(r)] = 1;
    let removedPlanted = 0;
    for (let i = 0; i < ds.n; i++) if (removed[i] && groupOf[i]! >= 0) removedPlanted++;
    let one = 0;
    for (const g of groups) {
      const members = [g.original, ...g.copies.map((c) => c.row)];
      if (members.filter((m) => !removed[m]).length === 1) one++;
    }
    return {
      eps: x.eps,
      removed: x.removedRows.length,
      removedPlanted,
      groupsWithOneSurvivor: one,
      recall: plantedCopies ? removedPlanted / plantedCopies : 1,
      precision: x.removedRows.length ? removedPlanted / x.removedRows.length : 1,
    };
  });
  return { n: ds.n, dim: ds.dim, k, plantedGroups: groups.length, plantedCopies, perEps, run, dataDir, outputDir };
}
