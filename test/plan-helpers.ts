// What the tests of planned runs share: synthetic datasets on disk, configs, and the byte-for-byte
// comparison of a planned run's files with a single-process run's.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { SynthDataset, type SynthOptions } from '../tools/synth.js';
import { writeNpy } from '../src/io/npy.js';
import { listFiles } from './helpers.js';

/** Writes a synthetic dataset as a float32 .npy; returns its path. */
export function writeDataset(dir: string, name: string, opts: Partial<SynthOptions>): string {
  const ds = new SynthDataset(opts);
  const path = join(dir, name);
  writeNpy(path, ds.generate(), { shape: [ds.n, ds.dim] });
  return path;
}

/** A config file (our YAML) with these keys; returns its path. */
export function writeConfig(dir: string, name: string, keys: Record<string, unknown>): string {
  const path = join(dir, name);
  writeFileSync(path, Object.entries(keys).map(([k, v]) => `${k}: ${Array.isArray(v) ? `[${v.join(', ')}]` : String(v)}`).join('\n') + '\n');
  return path;
}


/**
 * The files of a single-process run's output folder, each compared byte for byte with the planned
 * run's; the manifest (timestamps), summary.json (timings) and the folder's lock file (the pid of
 * its last holder) are left out. Returns the names compared.
 */
export function assertSameOutputs(single: string, planned: string): string[] {
  const skip = new Set([join('semdedup', 'manifest.json'), join('semdedup', 'summary.json'), join('semdedup', 'lock')]);
  const a = listFiles(single).filter((f) => !skip.has(f));
  const b = listFiles(planned).filter((f) => !skip.has(f) && !f.startsWith(join('semdedup', 'plan')));
  assert.deepEqual(b, a, 'the planned run wrote the same set of files');
  for (const f of a) assert.ok(readFileSync(join(single, f)).equals(readFileSync(join(planned, f))), `${f} differs from the single-process run's`);
  for (const must of ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy', join('semdedup', 'cluster_order.npy'), join('semdedup', 'M.npy'), join('semdedup', 'keep_order.npy')])
    assert.ok(a.includes(must), `${must} among the compared files`);
  return a;
}
