// What every step shares: options, progress, cancellation, the backend log line, the output folder.
import { accessSync, constants } from 'node:fs';
import { makeDir } from '../io/atomic.js';
import { SemDedupError, OutputError } from '../errors.js';
import { loadNative, nativeInfo, type NativeCancelToken, type Ran } from '../native/index.js';
import { toManifest, type PartialResolved } from '../config.js';
import { readManifest, writeManifest, type Manifest } from '../manifest.js';

export type { DeviceChoice as Device } from '../native/index.js';
import type { DeviceChoice } from '../native/index.js';

/**
 * Version of the engine's numerical rules (docs/algorithm.md, "Numerical contract": exact
 * k-means, assignment, step 3's keys and M). The train, cluster, sort and dedup records carry it
 * in their params, so a record written by an engine with other rules (or none, as before these
 * rules) is not current: its centroids, assignment and maxima are recomputed, never reused.
 */
export const ALGORITHM_VERSION = 2;

export interface Progress {
  /** The step and sub-step, e.g. 'cluster:train', 'dedup'. */
  stage: string;
  done: number;
  total: number;
}

export interface CommonOptions {
  /** Worker threads (0 or absent: all cores). */
  threads?: number;
  /** Backend for the heavy steps: 'auto' (CUDA when a usable GPU is there), 'cpu', 'cuda'. */
  device?: DeviceChoice;
  /** Device bytes a GPU job may use (0: 85% of the free memory). */
  gpuMemoryLimit?: number;
  /** Called from the event loop as work advances. */
  onProgress?: (p: Progress) => void;
  /** Aborting rejects the step's promise with an ERR_CANCELLED error; files already complete stay. */
  signal?: AbortSignal;
  /** Log lines (default: none). */
  log?: (line: string) => void;
}

/**
 * Logs which backend ran a job. The native engine facade chooses it (device auto: the GPU when
 * it can, with the reason when it cannot; cuda: the GPU or an error with the reason).
 */
export function noteBackend(log: ((l: string) => void) | undefined, job: string, ran: Ran): void {
  if (!log) return;
  if (ran.backend === 'cuda') log(`${job}: CUDA (${nativeInfo().cuda.name ?? 'GPU'})`);
  else log(`${job}: CPU${ran.backendNote ? ` (${ran.backendNote})` : ''}`);
}

/** A native cancel token wired to an AbortSignal. */
export function cancelToken(signal?: AbortSignal): { token: NativeCancelToken; dispose: () => void } {
  const token = new (loadNative().CancelToken)();
  if (!signal) return { token, dispose: () => {} };
  if (signal.aborted) token.cancel();
  const onAbort = () => token.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  return { token, dispose: () => signal.removeEventListener('abort', onAbort) };
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new SemDedupError('ERR_CANCELLED', 'cancelled');
}

/** Runs a native promise with progress and cancellation; its errors (SemDedupErrors from the addon) name the stage. */
export async function runNative<T>(
  opts: CommonOptions,
  stage: string,
  call: (job: { onProgress: (done: number, total: number) => void; cancel: NativeCancelToken }) => Promise<T>,
): Promise<T> {
  throwIfAborted(opts.signal);
  const { token, dispose } = cancelToken(opts.signal);
  // The addon settles a job's promise behind its progress reports, which never go back.
  try {
    return await call({ onProgress: (done, total) => opts.onProgress?.({ stage, done, total }), cancel: token });
  } catch (e) {
    throw e instanceof SemDedupError ? e.within(stage) : e;
  } finally {
    dispose();
  }
}

/** Makes sure the output folder exists and is writable, with a clear error if not. */
export function ensureOutputDir(dir: string): void {
  try {
    makeDir(dir); // one level at a time: never loops (Node's recursive mkdir can, e.g. under /proc)
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new OutputError(`${dir}: the output folder cannot be created or written: ${(e as Error).message}`, { file: dir, cause: e });
  }
}

export function now(): number {
  return performance.now();
}

/**
 * Records in the manifest the config of the command that completed (canonical keys), its files and
 * the engine that ran it; a planned run also its plan (the steps are committed by each step).
 */
export function commitConfig(dir: string, cfg: PartialResolved, plan?: Manifest['plan']): void {
  const m = readManifest(dir);
  const info = nativeInfo();
  m.config = toManifest(cfg);
  m.configFiles = cfg.files;
  m.engine = { name: 'semdedup', version: info.version, faiss: info.faiss, blasCore: info.blasCore };
  if (plan) m.plan = plan;
  writeManifest(dir, m);
}
