// IEEE half-precision conversions of the TypeScript side (the native core has its own for its
// kernels): float16 shards written by the embed step and Parquet half-float columns.

/** float32 values → IEEE half bits, rounded to nearest even (overflow to ±inf, NaN kept). */
export function toFloat16(src: Float32Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    const sign = (x >>> 16) & 0x8000;
    const a = x & 0x7fffffff;
    let h: number;
    if (a >= 0x7f800000) h = 0x7c00 | (a > 0x7f800000 ? 0x200 : 0);
    else if (a >= 0x477ff000) h = 0x7c00;
    else if (a < 0x38800000) {
      if (a < 0x33000000) h = 0;
      else {
        const e = a >>> 23;
        const m = (a & 0x7fffff) | 0x800000;
        const shift = 126 - e;
        h = m >>> shift;
        const rem = m & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        if (rem > half || (rem === half && h & 1)) h++;
      }
    } else {
      h = (a >>> 13) - (112 << 10);
      const rem = a & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
    }
    out[i] = sign | h;
  }
  return out;
}

/** IEEE half bits → float32. */
export function halfToFloat(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const x = h[i]!;
    const s = x & 0x8000 ? -1 : 1;
    const e = (x >> 10) & 0x1f;
    const m = x & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
