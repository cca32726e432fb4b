// Validate first, then work: every input a command will use (the embeddings' layout, the ids, a
// given centroids file, every parameter, the backend, the output folder) is checked before any
// file or folder is created, so a refused run leaves the output folder as it was.
import { accessSync, constants, existsSync, realpathSync, statSync, statfsSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, dirname, resolve, sep } from 'node:path';
import { keyName, type PartialResolved } from './config.js';
import { embeddingsLayout, type EmbeddingsLayout, type EmbeddingsSpec } from './embeddings.js';
import { ConfigError, InputError, NumericError, OutputError } from './errors.js';
import { readNpy } from './io/npy.js';
import { engineFor } from './native/index.js';
import { readManifest } from './manifest.js';
import { outputs } from './layout.js';
import { validateEps, validateK } from './decision.js';

export type Command = 'cluster' | 'sort' | 'dedup' | 'extract' | 'run';

const PREV: Record<string, string> = { sort: 'cluster', dedup: 'sort', extract: 'dedup' };

/** Threads above this multiple of the cores only cost memory and switching. */
export const THREADS_PER_CORE_MAX = 4;

/** `threads` capped at THREADS_PER_CORE_MAX × the cores, with a warning when it was above. */
export function capThreads(threads: number | undefined, log?: (l: string) => void): number | undefined {
  if (threads === undefined || threads <= 0) return threads;
  const cap = THREADS_PER_CORE_MAX * Math.max(1, cpus().length);
  if (threads <= cap) return threads;
  const msg = `warning: threads ${threads} is more than ${THREADS_PER_CORE_MAX} × the ${cpus().length} cores; using ${cap}`;
  if (log) log(msg);
  else process.emitWarning(msg);
  return cap;
}

/**
 * A --threads value given on a command line (or by the environment): a non-negative integer
 * (0: all cores), capped like the config's `threads`. Anything else is a ConfigError naming `flag`.
 */
export function parseThreads(value: string | undefined, flag: string, log?: (l: string) => void): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new ConfigError(`${flag} must be a non-negative integer (0: all cores), got '${value}'`, { key: 'threads' });
  return capThreads(Number(v), log);
}

/** Whether two paths name the same existing file (same device and inode: links and hard links too). */
function sameFile(a: string, b: string): boolean {
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}

/** The real path of `p`, or of its folder joined with its name when `p` does not exist yet. */
function realish(p: string): string {
  const abs = resolve(p);
  try {
    return realpathSync(abs);
  } catch {
    try {
      return resolve(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/**
 * An output file a user names (-o, --output, --matches) must not be one of the run's inputs
 * (`inputs`: embeddings, ids, reference files, config files), a file the output folder's manifest
 * commits, or a file in the engine's own folder (`semdedup/`): writing it would destroy what the
 * run reads. Compared by identity (links and hard links included). Checked before anything is written.
 */
export function refuseOverwrite(target: string, flag: string, ctx: { outputDir?: string; inputs?: readonly (string | undefined)[] }): void {
  const protectedFiles: string[] = (ctx.inputs ?? []).filter((p): p is string => typeof p === 'string');
  if (ctx.outputDir) {
    const ours = realish(outputs.ours(ctx.outputDir));
    const t = realish(target);
    if (t === ours || t.startsWith(ours + sep))
      throw new ConfigError(`${flag} ${target}: that is inside the engine's own folder ${outputs.ours(ctx.outputDir)}; choose another file`, { key: flag.replace(/^-+/, ''), file: target });
    const m = readManifest(ctx.outputDir);
    for (const rec of Object.values(m.steps))
      for (const st of [...Object.values(rec.inputs ?? {}), ...Object.values(rec.outputs ?? {})])
        protectedFiles.push(st.rel !== undefined ? resolve(ctx.outputDir, st.rel) : st.path);
  }
  for (const p of protectedFiles)
    if (sameFile(target, p) || realish(target) === realish(p))
      throw new ConfigError(`${flag} ${target}: that is ${sameFile(target, p) && resolve(target) !== resolve(p) ? `the same file as ${p}, ` : ''}one of the run's inputs or committed files; writing it would destroy it: choose another file`, { key: flag.replace(/^-+/, ''), file: target });
}

// Filesystems no output can live on (Linux statfs magic numbers): procfs, sysfs, cgroup, debugfs.
const PSEUDO_FS = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
]);

/** The output folder exists and is a writable folder, or can be created in a writable one. */
export function checkOutputDir(dir: string): void {
  const abs = resolve(dir);
  let cur = abs;
  for (;;) {
    let st;
    try {
      st = statSync(cur);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw new OutputError(`${dir}: the output folder cannot be used: ${(e as Error).message}`, { file: dir, cause: e });
      const up = dirname(cur);
      if (up === cur) break;
      cur = up;
      continue;
    }
    if (!st.isDirectory())
      throw new OutputError(`${dir}: the output folder cannot be ${cur === abs ? 'used' : 'created'}: ${cur} is not a folder`, { file: dir });
    try {
      accessSync(cur, constants.W_OK | constants.X_OK);
    } catch (e) {
      throw new OutputError(`${dir}: the output folder cannot be ${cur === abs ? 'written' : 'created'}: ${cur} is not writable`, { file: dir, cause: e });
    }
    try {
      const fsType = PSEUDO_FS.get(Number(statfsSync(cur).type));
      if (fsType) throw new OutputError(`${dir}: the output folder would be on the ${fsType} pseudo-filesystem (${cur}); choose a real folder`, { file: dir });
    } catch (e) {
      if (e instanceof OutputError) throw e;
    }
    return;
  }
}

/** A given centroids file: a 2-D float32 (k, D) .npy of finite values. */
export function checkCentroidsFile(path: string, k: number | undefined, d: number | undefined): void {
  let header, data;
  try {
    ({ header, data } = readNpy(path));
  } catch (e) {
    if (e instanceof InputError) throw new InputError(e.message, { file: path, key: 'centroids', cause: e });
    throw e;
  }
  if (!(data instanceof Float32Array) || header.shape.length !== 2)
    throw new InputError(`${path}: the given centroids must be a 2-D float32 .npy (k, D), found ${header.descr} shape (${header.shape.join(', ')})`, { file: path, key: 'centroids' });
  if ((k !== undefined && header.shape[0] !== k) || (d !== undefined && header.shape[1] !== d))
    throw new InputError(`${path}: the given centroids have shape (${header.shape.join(', ')}), expected (k=${k}, D=${d})`, { file: path, key: 'centroids' });
  const D = header.shape[1]!;
  const bad = data.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0)
    throw new NumericError(`${path}: the given centroids hold ${data[bad]} (centroid ${Math.floor(bad / D)}, value ${bad % D}); centroids must be finite`, { file: path });
}

function specOf(cfg: PartialResolved): EmbeddingsSpec {
  return {
    path: cfg.embeddings!,
    format: cfg.embeddingsFormat,
    dtype: cfg.embeddingsDtype,
    ...(cfg.datasetSize !== undefined ? { count: cfg.datasetSize } : {}),
    ...(cfg.dim !== undefined ? { dim: cfg.dim } : {}),
    ...(cfg.names ? { names: { dim: keyName(cfg, 'dim'), count: keyName(cfg, 'dataset_size') } } : {}),
  };
}

/**
 * Checks what `command` will read and write, before anything is created. Ids are checked where
 * they are read (resolveIds), also before any work. Returns the embeddings' layout when read.
 */
export function validateInputs(cfg: PartialResolved, command: Command, extra: { eps?: number } = {}): { layout?: EmbeddingsLayout } {
  if (cfg.outputDir) {
    checkOutputDir(cfg.outputDir);
    // The later steps read what the earlier ones wrote there: no folder, nothing to read.
    if ((command === 'sort' || command === 'dedup' || command === 'extract') && !existsSync(cfg.outputDir))
      throw new InputError(
        `${cfg.outputDir}: the output folder does not exist: run the ${PREV[command]} step first (semdedup ${PREV[command]})`,
        { file: cfg.outputDir },
      );
  }
  if (cfg.threads !== undefined && (!Number.isSafeInteger(cfg.threads) || cfg.threads < 0))
    throw new ConfigError(`threads must be a non-negative integer, got ${cfg.threads}`, { key: 'threads' });
  if (command === 'dedup' || command === 'run') validateEps(cfg.epsList ?? []);
  if (extra.eps !== undefined) validateEps([extra.eps]);
  const needEmb = command === 'cluster' || command === 'dedup' || command === 'run' || (command === 'sort' && cfg.simMetric === 'cosine' && !cfg.spherical);
  let layout: EmbeddingsLayout | undefined;
  if (needEmb && cfg.embeddings) {
    layout = embeddingsLayout(specOf(cfg));
    if (layout.n < 1) throw new InputError(`${layout.path}: the embeddings hold no rows (N = 0)`, { file: layout.path, key: 'embeddings' });
    if (layout.d < 1) throw new InputError(`${layout.path}: the embeddings have rows of no values (D = 0)`, { file: layout.path, key: 'dim' });
  }
  if (command === 'cluster' || command === 'run') {
    if (cfg.k !== undefined) validateK(cfg.k, layout ? { n: layout.n, file: layout.path } : undefined, keyName(cfg, 'k'));
    if (cfg.centroids) checkCentroidsFile(cfg.centroids, cfg.k, layout?.d);
  }
  // The engine resolves the device once (device cuda without a usable GPU: ERR_BACKEND with the
  // reason), before anything is written.
  if (command !== 'extract' && command !== 'sort') engineFor(cfg.device);
  return layout ? { layout } : {};
}
