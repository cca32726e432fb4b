// Loads the native addon: the prebuilt binary of the platform package first (the optional
// dependency semdedup-<platform>-<arch>[-gnu|-musl]), then the local build (build/Release, made
// by the install hook or `npm run build:native`), else one error that says what was tried and how
// to build. SEMDEDUP_NATIVE_PATH names one addon file to load instead (and only that one).
// Before loading, it points OpenBLAS at the right kernel for this CPU (see blasCoreFor); after,
// it registers SemDedupError as the class of every error the addon throws.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { SemDedupError } from '../errors.js';
import { blasCoreFor, candidatePaths, cpuFlags, packageRoot, platformPackage } from './platform.js';
import type { NativeAddon, NativeInfo } from './types.js';

let cached: NativeAddon | undefined;
let blasNote = '';

/** Why the BLAS kernel is what it is (for `semdedup info`). */
export function blasSelection(): string {
  return blasNote;
}

let loadedPath = '';
/** The addon file in use (for `semdedup info`); empty before the first loadNative(). */
export function nativePath(): string {
  return loadedPath;
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (process.env.OPENBLAS_CORETYPE === undefined) {
    const core = blasCoreFor(cpuFlags());
    if (core) {
      process.env.OPENBLAS_CORETYPE = core; // read by OpenBLAS when the addon loads it
      blasNote = `OPENBLAS_CORETYPE=${core} chosen from the CPU flags`;
    } else {
      blasNote = 'OpenBLAS detects the CPU itself';
    }
  } else {
    blasNote = `OPENBLAS_CORETYPE=${process.env.OPENBLAS_CORETYPE} set by the environment`;
  }
  const require = createRequire(import.meta.url);
  const tried: string[] = [];
  for (const p of candidatePaths()) {
    if (!existsSync(p)) {
      tried.push(`${p} (not found)`);
      continue;
    }
    try {
      const addon = require(p) as NativeAddon;
      addon.setErrorClass({ errorClass: SemDedupError });
      cached = addon;
      loadedPath = p;
      return cached;
    } catch (e) {
      tried.push(`${p} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new SemDedupError(
    'ERR_NATIVE',
    `the semdedup native addon could not be loaded. Tried:\n  ${tried.join('\n  ')}\n` +
      (process.env.SEMDEDUP_NATIVE_PATH
        ? 'SEMDEDUP_NATIVE_PATH names the only file tried; unset it to use the installed addon.'
        : `No prebuilt addon (package ${platformPackage()}) is installed for this platform. Build it from source ` +
          `with \`npm rebuild semdedup\` (in a checkout: \`npm run build:native\` in ${packageRoot}); ` +
          `that needs a C++17 compiler, cmake >= 3.19 for the full build, FAISS and OpenBLAS ` +
          `(Debian/Ubuntu: apt-get install g++ make cmake libfaiss-dev libopenblas-dev).`),
  );
}

let cachedInfo: NativeInfo | undefined;
/** The engine facts (versions, BLAS kernel, GPU), read from the addon once per process. */
export function nativeInfo(): NativeInfo {
  cachedInfo ??= loadNative().info();
  return cachedInfo;
}

