// What `semdedup info` reports: versions, CPU features, the BLAS kernel in use, threads, GPU.
import { cpus } from 'node:os';
import { blasSelection, cpuFlags, loadNative, nativePath } from './native.js';

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
    backend: {
      kmeans: i.cuda.available ? 'cuda' : 'cpu',
      maxSimilarity: i.cuda.available ? 'cuda' : 'cpu',
    },
  };
  if (opts.sgemm) out.sgemmGflops = Number((await addon.measureSgemm(2048, 3)).toFixed(1));
  return out;
}
