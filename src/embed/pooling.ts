// Pooling of token embeddings into one vector per text, as sentence-transformers' Pooling and
// Normalize modules compute it, and float32 → float16 rounding for the written shards.

/** The pooling modes of sentence-transformers' `1_Pooling/config.json`, in its concatenation order. */
export const POOLING_MODES = ['cls', 'max', 'mean', 'mean_sqrt_len', 'weightedmean', 'lasttoken'] as const;
export type PoolingMode = (typeof POOLING_MODES)[number];

/** The config key of each mode (`pooling_mode_<key>`). */
export const POOLING_KEYS: Record<PoolingMode, string> = {
  cls: 'pooling_mode_cls_token',
  max: 'pooling_mode_max_tokens',
  mean: 'pooling_mode_mean_tokens',
  mean_sqrt_len: 'pooling_mode_mean_sqrt_len_tokens',
  weightedmean: 'pooling_mode_weightedmean_tokens',
  lasttoken: 'pooling_mode_lasttoken',
};

/**
 * Pools `hidden` ([B, L, H] row-major, float32) with `mask` ([B, L], 1 for real tokens) into
 * `out` at rows `rows[b]` (out: [N, H × modes]); sums in float64. Then L2-normalises each row
 * when `normalize` (x / max(‖x‖, 1e-12), as torch's normalize).
 */
export function poolInto(
  hidden: Float32Array,
  mask: ArrayLike<number>,
  B: number,
  L: number,
  H: number,
  modes: readonly PoolingMode[],
  normalize: boolean,
  out: Float32Array,
  rows: readonly number[],
): void {
  const D = H * modes.length;
  const acc = new Float64Array(D);
  const sum = new Float64Array(H);
  for (let b = 0; b < B; b++) {
    let n = 0;
    let last = 0;
    for (let t = 0; t < L; t++)
      if (mask[b * L + t]) {
        n++;
        last = t;
      }
    const base = b * L * H;
    let off = 0;
    for (const mode of modes) {
      switch (mode) {
        case 'cls':
          for (let j = 0; j < H; j++) acc[off + j] = hidden[base + j]!;
          break;
        case 'lasttoken':
          for (let j = 0; j < H; j++) acc[off + j] = hidden[base + last * H + j]!;
          break;
        case 'max':
          for (let j = 0; j < H; j++) acc[off + j] = -Infinity;
          for (let t = 0; t < L; t++) {
            if (!mask[b * L + t]) continue;
            const r = base + t * H;
            for (let j = 0; j < H; j++) if (hidden[r + j]! > acc[off + j]!) acc[off + j] = hidden[r + j]!;
          }
          break;
        case 'mean':
        case 'mean_sqrt_len':
        case 'weightedmean': {
          sum.fill(0);
          let wsum = 0;
          for (let t = 0; t < L; t++) {
            if (!mask[b * L + t]) continue;
            const w = mode === 'weightedmean' ? t + 1 : 1;
            wsum += w;
            const r = base + t * H;
            for (let j = 0; j < H; j++) sum[j]! += w * hidden[r + j]!;
          }
          const div = mode === 'mean_sqrt_len' ? Math.sqrt(Math.max(n, 1e-9)) : Math.max(wsum, 1e-9);
          for (let j = 0; j < H; j++) acc[off + j] = sum[j]! / div;
          break;
        }
      }
      off += H;
    }
    let scale = 1;
    if (normalize) {
      let s = 0;
      for (let j = 0; j < D; j++) s += acc[j]! * acc[j]!;
      scale = 1 / Math.max(Math.sqrt(s), 1e-12);
    }
    const o = rows[b]! * D;
    for (let j = 0; j < D; j++) out[o + j] = acc[j]! * scale;
  }
}

/** Copies already pooled rows ([B, D]) into `out` at `rows[b]`, normalising when asked. */
export function copyPooledInto(pooled: Float32Array, B: number, D: number, normalize: boolean, out: Float32Array, rows: readonly number[]): void {
  for (let b = 0; b < B; b++) {
    let scale = 1;
    if (normalize) {
      let s = 0;
      for (let j = 0; j < D; j++) s += pooled[b * D + j]! * pooled[b * D + j]!;
      scale = 1 / Math.max(Math.sqrt(s), 1e-12);
    }
    for (let j = 0; j < D; j++) out[rows[b]! * D + j] = pooled[b * D + j]! * scale;
  }
}
