// Sharded datasets on disk for the tests: float16 .npy shards and the same rows as one file.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SynthDataset } from '../tools/synth.js';
import { writeNpy } from '../src/io/npy.js';

/** float32 → IEEE half bits, round to nearest even (values of unit rows: no overflow). */
export function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0]!;
  const sign = (u >>> 16) & 0x8000;
  const absx = u & 0x7fffffff;
  if (absx < 0x38800000) {
    // subnormal half (or zero)
    if (absx < 0x33000000) return sign;
    const e = absx >>> 23;
    const m = (absx & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = (absx >>> 13) - (112 << 10);
  const rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++;
  return sign | r;
}

/** Shard sizes summing to n: uneven, some of one row, some empty. */
export function shardSizes(n: number, count: number, seed = 7): number[] {
  let s = seed;
  const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const w = Array.from({ length: count }, (_, i) => (i % 17 === 5 ? 0 : i % 13 === 3 ? 1e-9 : 0.2 + r()));
  const tot = w.reduce((a, b) => a + b, 0);
  const sizes = w.map((x) => Math.floor((x / tot) * n));
  sizes[count - 1]! += n - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

export interface ShardedData {
  n: number;
  d: number;
  /** The whole dataset as one float16 .npy. */
  whole: string;
  /** The shard files, in order. */
  shards: string[];
  sizes: number[];
  /** The float16 bits of all rows. */
  bits: Uint16Array;
}

/** A float16 dataset written both as one .npy and as `count` .npy shards `emb_0000.npy` … in `dir/emb`. */
export function writeSharded(dir: string, n: number, d: number, count: number, clusters = 20): ShardedData {
  const ds = new SynthDataset({ n, dim: d, clusters, seed: 3 });
  const x = ds.generate();
  const bits = Uint16Array.from(x, toHalf);
  const whole = join(dir, 'whole.npy');
  writeNpy(whole, bits, { shape: [n, d], float16: true });
  mkdirSync(join(dir, 'emb'), { recursive: true });
  const sizes = shardSizes(n, count);
  const shards: string[] = [];
  let row = 0;
  sizes.forEach((m, i) => {
    const p = join(dir, 'emb', `emb_${String(i).padStart(4, '0')}.npy`);
    writeNpy(p, bits.subarray(row * d, (row + m) * d), { shape: [m, d], float16: true });
    shards.push(p);
    row += m;
  });
  return { n, d, whole, shards, sizes, bits };
}

