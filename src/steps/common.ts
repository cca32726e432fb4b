// What every step shares: options, progress, cancellation, device choice, the embeddings check.
import { existsSync, renameSync, rmSync, accessSync, constants } from 'node:fs';
import { makeDir, tempPathFor } from '../io/atomic.js';
import { SemDedupError, OutputError, NumericError } from '../errors.js';
import { outputs } from '../layout.js';
import { loadNative, nativeError, type NativeCancelToken } from '../native.js';
import { createEmbeddingsFile, openEmbeddings, type Embeddings, type EmbeddingsSpec } from '../embeddings.js';
import { recordStep, stamp, stepIsCurrent } from '../manifest.js';

export type Device = 'auto' | 'cpu' | 'cuda';

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
  device?: Device;
  /** Called from the event loop as work advances. */
  onProgress?: (p: Progress) => void;
  /** Aborting rejects the step's promise with an ERR_CANCELLED error; files already complete stay. */
  signal?: AbortSignal;
  /** Log lines (default: none). */
  log?: (line: string) => void;
}

/** Resolves 'auto' to the backend that will run, and checks an explicit 'cuda'. */
export function resolveDevice(device: Device | undefined, log?: (l: string) => void): 'cpu' | 'cuda' {
  const info = loadNative().info();
  const want = device ?? 'auto';
  if (want === 'cpu') return 'cpu';
  if (info.cuda.available) {
    log?.(`backend: CUDA (${info.cuda.name ?? 'GPU'})`);
    return 'cuda';
  }
  if (want === 'cuda')
    throw new SemDedupError('ERR_BACKEND', `device 'cuda' was requested but no usable GPU is available: ${info.cuda.reason}`);
  log?.(`backend: CPU (${info.cuda.compiled ? `no usable GPU: ${info.cuda.reason}` : 'built without CUDA'})`);
  return 'cpu';
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

/** Runs a native promise with progress and cancellation, mapping its errors. */
export async function runNative<T>(
  opts: CommonOptions,
  stage: string,
  call: (onProgress: (done: number, total: number) => void, token: NativeCancelToken) => Promise<T>,
): Promise<T> {
  throwIfAborted(opts.signal);
  const { token, dispose } = cancelToken(opts.signal);
  try {
    return await call((done, total) => opts.onProgress?.({ stage, done, total }), token);
  } catch (e) {
    throw nativeError(e, stage);
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

/**
 * Opens the embeddings and checks their rows before heavy work: NaN/Inf and all-zero rows are
 * errors. Rows whose norm differs from 1 by more than 1e-3: `auto` (default) refuses them with a
 * message; `always` writes an L2-normalised float32 copy into the output folder (reused while the
 * input is unchanged) and returns that; `never` uses the rows as they are.
 */
export async function openChecked(
  spec: EmbeddingsSpec | Embeddings,
  normalize: 'auto' | 'always' | 'never',
  outputDir: string,
  opts: CommonOptions,
): Promise<{ emb: Embeddings; owned: boolean }> {
  const given = 'native' in spec;
  const emb = given ? (spec as Embeddings) : openEmbeddings(spec as EmbeddingsSpec);
  try {
    // A file already checked (same stamp) by an earlier step of this output folder is not read again.
    const checkParams = { normalize };
    if (normalize !== 'always' && existsSync(outputDir) && stepIsCurrent(outputDir, 'check', checkParams, { embeddings: emb.path }))
      return { emb, owned: !given };
    const addon = loadNative();
    const tol = 1e-3;
    const r = await runNative(opts, 'check', (_p, token) => addon.scanEmbeddings(emb.native, tol, { threads: opts.threads ?? 0 }, token));
    if (r.nonfiniteRows > 0)
      throw new NumericError(`${emb.path}: row ${r.firstNonfinite} holds NaN or Inf (${r.nonfiniteRows} such rows)`, { file: emb.path });
    if (r.zeroRows > 0)
      throw new NumericError(`${emb.path}: row ${r.firstZero} is all zeros (${r.zeroRows} such rows); a zero vector has no direction to compare`, { file: emb.path });
    if (r.unnormalizedRows === 0 || normalize === 'never') {
      ensureOutputDir(outputDir);
      recordStep(outputDir, 'check', checkParams, { embeddings: emb.path }, {}, { rows: emb.n, minNorm: r.minNorm, maxNorm: r.maxNorm });
      return { emb, owned: !given };
    }
    if (normalize === 'auto')
      throw new NumericError(
        `${emb.path}: row ${r.firstUnnormalized} is not L2-normalised (${r.unnormalizedRows} rows have |norm - 1| > ${tol}; norms from ${r.minNorm.toPrecision(6)} to ${r.maxNorm.toPrecision(6)}). ` +
          `SemDeDup compares cosine similarities of unit vectors: set \`normalize: always\` (--normalize always) to normalise them into a copy first, or \`normalize: never\` to use them as they are.`,
        { file: emb.path },
      );
    // normalize === 'always'
    ensureOutputDir(outputs.ours(outputDir));
    const copyPath = outputs.normalized(outputDir);
    const params = { source: stamp(emb.path), n: emb.n, d: emb.d };
    if (!(existsSync(copyPath) && stepIsCurrent(outputDir, 'normalize', params, {}))) {
      opts.log?.(`normalising ${r.unnormalizedRows} rows into ${copyPath}`);
      const tmp = tempPathFor(copyPath);
      const out = createEmbeddingsFile(tmp, emb.n, emb.d, { format: 'memmap', dtype: 'float32' });
      try {
        const view = out.view() as Float32Array;
        const block = 16384;
        for (let b = 0; b < emb.n; b += block) {
          throwIfAborted(opts.signal);
          const e = Math.min(emb.n, b + block);
          const rows = emb.rows(b, e);
          for (let i = 0; i < e - b; i++) {
            let s = 0;
            for (let j = 0; j < emb.d; j++) s += rows[i * emb.d + j]! * rows[i * emb.d + j]!;
            const inv = 1 / Math.sqrt(s);
            for (let j = 0; j < emb.d; j++) view[(b + i) * emb.d + j] = rows[i * emb.d + j]! * inv;
          }
          opts.onProgress?.({ stage: 'normalize', done: e, total: emb.n });
        }
        out.close();
      } catch (err) {
        out.close();
        rmSync(tmp, { force: true });
        throw err;
      }
      renameSync(tmp, copyPath);
      recordStep(outputDir, 'normalize', params, {}, { copy: copyPath });
    }
    if (!given) emb.close();
    return { emb: openEmbeddings({ path: copyPath, format: 'memmap', dtype: 'float32', dim: emb.d, count: emb.n }), owned: true };
  } catch (e) {
    if (!given) emb.close();
    throw e;
  }
}

export function now(): number {
  return performance.now();
}
