// The manifest of an output folder (semdedup/manifest.json) is its commit record. A step writes
// its outputs (each to a temporary file, synced, renamed), then commits them by writing the
// manifest entry that names them with strong stamps (inode, size, mtime and ctime in ns: a
// rewrite, an edit, even one that keeps the mtime, changes the stamp). Readers accept only files
// that the manifest commits, with the parameters they ask for, and otherwise say what to rerun;
// a step whose parameters, inputs and outputs are unchanged is skipped.
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative, resolve, sep } from 'node:path';
import { InputError } from './errors.js';
import { atomicWriteFile, makeDir } from './io/atomic.js';
import { outputs } from './layout.js';
import { nativeInfo } from './native.js';

export interface FileStamp {
  path: string;
  /** The path relative to the output folder, for a file inside it (the folder may be moved or copied). */
  rel?: string;
  size: number;
  /** Inode, mtime and ctime in nanoseconds, as decimal strings. */
  ino: string;
  mtimeNs: string;
  ctimeNs: string;
  /**
   * sha256 of the content, for files up to HASH_MAX_BYTES: such a file is identified by its
   * content (so a copied folder stays committed, and a rewrite within one tick of the file clock
   * onto a reused inode is still seen); a larger one by its inode, size and times (writing it
   * takes longer than a tick).
   */
  sha256?: string;
}

export const HASH_MAX_BYTES = 64 * 2 ** 20;

function sha256Of(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** The stamp of `path`; `dir`: the output folder (a file inside it also gets its relative path). */
export function stamp(path: string, dir?: string): FileStamp {
  const st = statSync(path, { bigint: true });
  const size = Number(st.size);
  const abs = resolve(path);
  const root = dir !== undefined ? resolve(dir) + sep : undefined;
  return {
    path: abs, ...(root && abs.startsWith(root) ? { rel: relative(root, abs) } : {}),
    size, ino: String(st.ino), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs),
    ...(st.isFile() && size <= HASH_MAX_BYTES ? { sha256: sha256Of(path) } : {}),
  };
}

/** Where a recorded file is now: inside the output folder `dir` when it was inside the folder it was recorded in. */
function locate(s: FileStamp, dir: string): string {
  return s.rel !== undefined ? join(resolve(dir), s.rel) : s.path;
}

/** True when the file at `path` is the recorded one: the same content (small files) or the same inode, size and times. */
function matches(recorded: FileStamp | undefined, path: string): boolean {
  if (!recorded) return false;
  const now = stampIfAny(path);
  if (!now || now.size !== recorded.size) return false;
  if (recorded.sha256 !== undefined || now.sha256 !== undefined) return recorded.sha256 === now.sha256;
  return sameStamp(recorded, now);
}

/** The stamp of `path` now, or undefined when it does not exist. */
function stampIfAny(path: string): FileStamp | undefined {
  try {
    return stamp(path);
  } catch {
    return undefined;
  }
}

export function sameStamp(a: FileStamp | undefined, b: FileStamp | undefined): boolean {
  return (
    !!a && !!b && a.path === b.path && a.size === b.size && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs &&
    a.sha256 === b.sha256
  );
}

export interface StepRecord {
  completedAt: string;
  params: Record<string, unknown>;
  inputs: Record<string, FileStamp>;
  outputs: Record<string, FileStamp>;
  stats?: Record<string, unknown>;
}

export interface Manifest {
  /** The config of the last command that completed in this folder (canonical keys) and its files. */
  config?: Record<string, unknown>;
  configFiles?: string[];
  engine: { name: 'semdedup'; version: string; faiss: string; blasCore: string };
  /** A planned run's plan (semdedup/plan.json; the tasks' states beside it in semdedup/plan/state/). */
  plan?: { path: string; id: string; tasks: Record<string, number> };
  steps: Record<string, StepRecord>;
}

export function readManifest(dir: string): Manifest {
  const path = outputs.manifest(dir);
  const info = nativeInfo();
  const engine = { name: 'semdedup' as const, version: info.version, faiss: info.faiss, blasCore: info.blasCore };
  if (!existsSync(path)) return { engine, steps: {} };
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    return { ...m, engine, steps: m.steps ?? {} };
  } catch {
    return { engine, steps: {} }; // an unreadable manifest commits nothing: only costs recomputation
  }
}

/** Writes the manifest atomically (synced, then renamed): this is the commit point. */
export function writeManifest(dir: string, m: Manifest): void {
  makeDir(outputs.ours(dir));
  atomicWriteFile(outputs.manifest(dir), JSON.stringify(m, null, 2) + '\n');
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/**
 * Commits a completed step: its parameters and the stamps of its inputs and outputs (all
 * already written and synced). Replaces the step's earlier record.
 */
export function recordStep(
  dir: string,
  step: string,
  params: Record<string, unknown>,
  inputs: Record<string, string>,
  outs: Record<string, string>,
  stats?: Record<string, unknown>,
): void {
  const m = readManifest(dir);
  const st = (rec: Record<string, string>) => Object.fromEntries(Object.entries(rec).map(([k, p]) => [k, stamp(p, dir)]));
  m.steps[step] = { completedAt: new Date().toISOString(), params, inputs: st(inputs), outputs: st(outs), ...(stats ? { stats } : {}) };
  writeManifest(dir, m);
}

/** The record of a step when its params equal `params`, its inputs are `inputs` unchanged and its outputs are unchanged since. */
export function currentRecord(dir: string, step: string, params: Record<string, unknown>, inputs: Record<string, string>): StepRecord | undefined {
  const rec = readManifest(dir).steps[step];
  if (!rec) return undefined;
  if (canonical(rec.params) !== canonical(params)) return undefined;
  if (Object.keys(rec.inputs).length !== Object.keys(inputs).length) return undefined;
  for (const [k, p] of Object.entries(inputs)) if (!matches(rec.inputs[k], p)) return undefined;
  for (const s of Object.values(rec.outputs)) if (!matches(s, locate(s, dir))) return undefined;
  return rec;
}

/** True when a step completed with these params and its inputs and outputs are unchanged since. */
export function stepIsCurrent(dir: string, step: string, params: Record<string, unknown>, inputs: Record<string, string>): boolean {
  return currentRecord(dir, step, params, inputs) !== undefined;
}

const RERUN: Record<string, string> = {
  train: 'semdedup cluster',
  cluster: 'semdedup cluster',
  sort: 'semdedup sort',
  dedup: 'semdedup dedup',
};

/**
 * For a reader: the record of `step` when the manifest commits `files` (names of its outputs) as
 * they are on disk now, the inputs it read from the output folder are unchanged (so it belongs
 * to the folder's current upstream results), and its params agree with every entry of `want`.
 * Otherwise an InputError saying what differs and what to rerun.
 */
export function requireCommitted(dir: string, step: string, files: Record<string, string>, want: Record<string, unknown> = {}): StepRecord {
  const rerun = `rerun ${RERUN[step] ?? step}`;
  const rec = readManifest(dir).steps[step];
  if (!rec)
    throw new InputError(`${outputs.manifest(dir)}: no completed ${step} step is recorded in this output folder; ${rerun}`, { file: outputs.manifest(dir) });
  for (const [name, file] of Object.entries(files)) {
    const s = rec.outputs[name];
    if (!existsSync(file)) throw new InputError(`${file} not found: ${rerun}`, { file });
    if (!s || (s.rel !== undefined && locate(s, dir) !== resolve(file)) || !matches(s, file))
      throw new InputError(`${file} is not the file the ${step} step completed (it was rewritten or changed since, e.g. by an interrupted run); ${rerun}`, { file });
  }
  for (const [name, s] of Object.entries(rec.inputs)) {
    if (s.rel === undefined) continue; // inputs outside the folder (the embeddings) are not needed by readers
    const p = locate(s, dir);
    if (!matches(s, p)) throw new InputError(`${p} (${name}) changed after the ${step} step read it: its results are out of date; ${rerun}`, { file: p });
  }
  for (const [k, v] of Object.entries(want)) {
    if (v === undefined) continue;
    if (canonical(rec.params[k]) !== canonical(v))
      throw new InputError(
        `${outputs.manifest(dir)}: the ${step} step in this output folder ran with ${k} = ${canonical(rec.params[k])}, not the requested ${canonical(v)}; ${rerun} with these parameters`,
        { file: outputs.manifest(dir), key: k },
      );
  }
  return rec;
}
