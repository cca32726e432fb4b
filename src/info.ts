// What `semdedup info` reports: versions, CPU features, the BLAS kernel in use, threads, GPU.
import { cpus } from 'node:os';
import { blasSelection, cpuFlags, engineFor, loadNative, nativePath } from './native/index.js';

export async function engineInfo(opts: { sgemm?: boolean } = {}): Promise<Record<string, unknown>> {
  const addon = loadNative();
  const i = addon.info();
  const flags = cpuFlags();
  const simd = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16'].filter((f) => flags.has(f));
  const out: Record<string, unknown> = {
    version: i.version,
    addon: nativePath(),
    node: process.version,
    faiss: i.faiss,
    blasCore: i.blasCore,
    blasSelection: blasSelection(),
    blasThreads: i.blasThreads,
    threads: i.hardwareThreads,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpuFeatures: simd.join(' '),
    kmeans: i.kmeans,
    cpuFilter: i.cpuFilter ?? 'fp32',
    cuda: i.cuda,
    // Where device auto runs the heavy jobs, as the engine resolves it.
    backend: {
      kmeans: engineFor('auto').device,
      maxSimilarity: engineFor('auto').device,
    },
  };
  if (opts.sgemm) {
    out.sgemmGflops = Number((await addon.measureSgemm({ n: 2048, repeats: 3 })).toFixed(1));
    // the distance kernel the passes use, against sgemm (the same threads, one run after the other)
    const f = await addon.measureFilter({ repeats: 3 });
    if (f > 0) {
      out.filterGops = Number(f.toFixed(1));
      out.filterVsSgemm = Number((f / (out.sgemmGflops as number)).toFixed(2));
    }
  }
  return out;
}
