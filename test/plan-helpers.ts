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

/** A stamp as it compares across two output folders: where (relative to its folder), its size and content. */
function sameFileRecord(s: { path: string; rel?: string; size: number; sha256?: string }, dir: string): Record<string, unknown> {
  const at = s.rel ?? s.path.split(dir).join('<out>');
  // summary.json holds the timings: compared below, timings aside.
  return at === join('semdedup', 'summary.json') ? { at } : { at, size: s.size, sha256: s.sha256 };
}

/** The manifest of an output folder as written (sealed JSON). */
function manifestOf(dir: string): {
  config?: Record<string, unknown>; configFiles?: string[]; engine?: unknown; plan?: unknown;
  steps: Record<string, { params: unknown; inputs: Record<string, { path: string; rel?: string; size: number; sha256?: string }>; outputs: Record<string, { path: string; rel?: string; size: number; sha256?: string }>; stats?: Record<string, unknown> }>;
} {
  return JSON.parse(readFileSync(join(dir, 'semdedup', 'manifest.json'), 'utf8'));
}

/** Keys of a step's stats that are timings (they differ run to run). */
const TIMINGS = new Set(['seconds', 'trainSeconds', 'assignSeconds']);

/**
 * The records of a planned run equal a single-process run's: the manifest's steps (each one's
 * parameters, and its inputs and outputs by place, size and content; the statistics both record,
 * timings aside), the config (its output folder aside), the engine; and summary.json (its seconds
 * aside, which must name the same steps). Returns the steps compared.
 */
export function assertSameRecords(single: string, planned: string): string[] {
  const a = manifestOf(single);
  const b = manifestOf(planned);
  const steps = Object.keys(a.steps).sort();
  assert.deepEqual(Object.keys(b.steps).sort(), steps, 'the planned run committed the same steps');
  for (const step of steps) {
    const x = a.steps[step]!;
    const y = b.steps[step]!;
    assert.deepEqual(y.params, x.params, `the ${step} step's parameters`);
    for (const side of ['inputs', 'outputs'] as const) {
      const norm = (r: Record<string, { path: string; rel?: string; size: number; sha256?: string }>, dir: string) =>
        Object.fromEntries(Object.entries(r).map(([k, s]) => [k, sameFileRecord(s, dir)]));
      assert.deepEqual(norm(y[side], planned), norm(x[side], single), `the ${step} step's ${side}`);
    }
    const xs = x.stats ?? {};
    const ys = y.stats ?? {};
    for (const key of Object.keys(xs))
      if (!TIMINGS.has(key) && key in ys)
        assert.deepEqual(JSON.parse(JSON.stringify(ys[key]).split(planned).join(single)), xs[key], `the ${step} step's ${key}`);
  }
  assert.deepEqual(JSON.parse(JSON.stringify(b.config).split(planned).join(single)), a.config, 'the recorded config (output folder aside)');
  assert.deepEqual(b.configFiles, a.configFiles);
  assert.deepEqual(b.engine, a.engine);
  assert.ok(b.plan, 'the planned run records its plan');
  const sa = JSON.parse(readFileSync(join(single, 'semdedup', 'summary.json'), 'utf8')) as { seconds?: Record<string, number> };
  const sb = JSON.parse(readFileSync(join(planned, 'semdedup', 'summary.json'), 'utf8')) as { seconds?: Record<string, number> };
  assert.deepEqual(Object.keys(sb.seconds ?? {}), Object.keys(sa.seconds ?? {}), 'summary.json times the same steps');
  delete sa.seconds;
  delete sb.seconds;
  assert.deepEqual(sb, sa, 'summary.json, timings aside');
  return steps;
}
