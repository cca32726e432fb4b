// What the reliability, kill-point and fuzz tests share: a small dataset on disk, the CLI
// arguments of a run on it, and a listing of an output folder.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeIdsMemmap } from '../src/io/ids.js';
import { SynthDataset } from '../tools/synth.js';
import { tmpFolder } from './helpers.js';

export const N = 600;
export const DIM = 16;
export const K = 4;

export interface Data {
  dir: string;
  emb: string;
  ids: string;
  idList: string[];
  X: Float32Array;
}

/** A folder with N × DIM unit rows (with planted duplicates) and S24 ids. */
export function makeData(tag: string, opts: { n?: number; seed?: number; ids?: string[] } = {}): Data {
  const n = opts.n ?? N;
  const dir = tmpFolder(tag);
  const X = new SynthDataset({ n, dim: DIM, clusters: K, seed: opts.seed ?? 7 }).generate();
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const emb = path.join(dir, 'data', 'embs.f32');
  writeFileSync(emb, Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  const idList = opts.ids ?? Array.from({ length: n }, (_, i) => `img_${String(i).padStart(5, '0')}.jpg`);
  const ids = path.join(dir, 'data', 'paths.S24');
  writeIdsMemmap(ids, idList, 24);
  return { dir, emb, ids, idList, X };
}

/** `--set` arguments of a run on `d` into `out`. */
export function runArgs(d: Data, out: string, extra: string[] = []): string[] {
  return [
    '--set', `embeddings=${d.emb}`, '--set', `dim=${DIM}`, '--set', `ids=${d.ids}`, '--set', 'ids_dtype=S24',
    '--set', `output_dir=${out}`, '--set', `k=${K}`, '--set', 'niter=5', '--device', 'cpu', '--threads', '2', '-q', ...extra,
  ];
}

import { listFiles } from './helpers.js';
export { listFiles };

/** Files whose bytes do not depend on timing: everything but the manifest, the lock and the summaries with seconds. */
export function resultFiles(dir: string): string[] {
  return listFiles(dir).filter((f) => !/(^|\/)(manifest\.json|lock|summary\.json)$/.test(f));
}

/** sha256 of each result file of `dir`. */
export function digest(dir: string): Record<string, string> {
  return Object.fromEntries(resultFiles(dir).map((f) => [f, createHash('sha256').update(readFileSync(path.join(dir, f))).digest('hex')]));
}

export function tempFiles(dir: string): string[] {
  return listFiles(dir).filter((f) => /\.tmp-\d+-[0-9a-f]+$|\.partial$/.test(f));
}
