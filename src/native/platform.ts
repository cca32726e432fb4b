// What the loader needs to know about this machine: the CPU's flags and the OpenBLAS kernel they
// call for, the platform package's name, the addon files to try, and the environment as the user
// gave it (before the loader chose an OpenBLAS kernel).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** CPU feature flags from /proc/cpuinfo (Linux); empty elsewhere. */
export function cpuFlags(): Set<string> {
  try {
    const text = readFileSync('/proc/cpuinfo', 'utf8');
    const line = text.split('\n').find((l) => l.startsWith('flags'));
    return new Set(line ? line.split(':')[1]!.trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/**
 * The OpenBLAS kernel to use on this CPU. OpenBLAS 0.3.21 does not know the newest CPUs
 * (e.g. Xeons with AMX) and falls back to its generic "Prescott" kernel, about 4x slower for
 * sgemm. We name the best kernel it has for the instruction set we see.
 */
export function blasCoreFor(flags: Set<string>): string | undefined {
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq'))
    return flags.has('avx512_bf16') ? 'Cooperlake' : 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/** OPENBLAS_CORETYPE as the user's environment had it, before the loader chose one. */
export const userOpenblasCoretype: string | undefined = process.env.OPENBLAS_CORETYPE;

/** The environment as the user gave it (for child processes such as benchmark peers). */
export function userEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (userOpenblasCoretype === undefined) delete env.OPENBLAS_CORETYPE;
  else env.OPENBLAS_CORETYPE = userOpenblasCoretype;
  return env;
}
/** The platform package's name here, e.g. semdedup-linux-x64-gnu. */
export function platformPackage(): string {
  let libc = '';
  if (process.platform === 'linux') {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    libc = report?.header?.glibcVersionRuntime ? '-gnu' : '-musl';
  }
  return `semdedup-${process.platform}-${process.arch}${libc}`;
}

/** The addon files the loader tries, in order: SEMDEDUP_NATIVE_PATH alone when set. */
export function candidatePaths(): string[] {
  if (process.env.SEMDEDUP_NATIVE_PATH) return [resolve(process.env.SEMDEDUP_NATIVE_PATH)];
  const list: string[] = [];
  const require = createRequire(import.meta.url);
  const pkg = platformPackage();
  try {
    list.push(require.resolve(`${pkg}/semdedup.node`, { paths: [packageRoot] }));
  } catch {
    list.push(join(packageRoot, 'node_modules', pkg, 'semdedup.node')); // not installed: reported as not found
  }
  list.push(join(packageRoot, 'build', 'Release', 'semdedup.node'));
  return list;
}

