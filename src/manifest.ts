// The manifest of an output folder (semdedup/manifest.json) is its commit record. A step writes
// its outputs (each to a temporary file, synced, renamed), then commits them by writing the
// manifest entry that names them with strong stamps (inode, size, mtime and ctime in ns: a
// rewrite, an edit, even one that keeps the mtime, changes the stamp). Readers accept only files
// that the manifest commits, with the parameters they ask for, and otherwise say what to rerun;
// a step whose parameters, inputs and outputs are unchanged is skipped.
//
// The manifest seals itself with the sha256 of its canonical content: a manifest whose seal does not
// match (a flipped byte, an edit) commits nothing. A reader checks the whole chain of what it reads:
// the files it reads are the ones the step committed, and every input of that step, and of the
// steps that made those inputs (the embeddings and ids included), is still the one they read.
// Outputs that no valid record commits any more (an earlier run's lists for other eps, sorted
// clusters beyond k) are removed by sweepStale: only names the engine owns, only regular files.
import { existsSync, lstatSync, readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative, resolve, sep } from 'node:path';
import { InputError } from './errors.js';
import { atomicWriteFile, makeDir } from './io/atomic.js';
import { sha256OfFile as sha256Of } from './io/hash.js';
import { outputs } from './layout.js';
import { resolveInputFiles } from './io/inputs.js';

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
export function matches(recorded: FileStamp | undefined, path: string): boolean {
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

/** True when two records name the same file state: the same content (small files), else the same inode, size and times. */
export function sameRecorded(a: FileStamp, b: FileStamp): boolean {
  if (a.sha256 !== undefined || b.sha256 !== undefined) return a.sha256 === b.sha256;
  return a.size === b.size && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
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
  /** The engine of the last command that recorded its config (commitConfig in steps/common.ts). */
  engine?: { name: 'semdedup'; version: string; faiss: string; blasCore: string };
  /** A planned run's plan (semdedup/plan.json; the tasks' states beside it in semdedup/plan/state/). */
  plan?: { path: string; id: string; tasks: Record<string, number> };
  steps: Record<string, StepRecord>;
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : x,
  );
}

/** The seal of a JSON record: the sha256 of its canonical form without its `sha256` field. */
function sealOf(obj: Record<string, unknown>): string {
  const { sha256: _seal, ...rest } = obj;
  return createHash('sha256').update(canonical(rest)).digest('hex');
}

/** `obj` with its seal (written by every sealed record: the manifest, planned-run states). */
export function sealed<T extends object>(obj: T): T & { sha256: string } {
  const { sha256: _old, ...rest } = obj as T & { sha256?: string };
  return { ...(rest as T), sha256: sealOf(rest) };
}

/**
 * The sealed JSON record in `text`, or a reason why it is not one (unparseable, no seal, a seal
 * that does not match its content: a flipped byte, an edit).
 */
export function unseal<T>(text: string): { value?: T; problem?: string } {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    return { problem: `it is not valid JSON (${(e as Error).message})` };
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return { problem: 'it is not a JSON object' };
  const seal = (obj as { sha256?: unknown }).sha256;
  if (typeof seal !== 'string') return { problem: 'it carries no checksum (sha256)' };
  if (seal !== sealOf(obj as Record<string, unknown>)) return { problem: 'its content does not match its checksum (it was edited or damaged)' };
  const { sha256: _s, ...rest } = obj as Record<string, unknown>;
  return { value: rest as T };
}

/** The manifest of `dir`, and why it commits nothing when it is there but unreadable or damaged. */
export function loadManifest(dir: string): { manifest: Manifest; problem?: string } {
  const path = outputs.manifest(dir);
  if (!existsSync(path)) return { manifest: { steps: {} } };
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return { manifest: { steps: {} }, problem: `it cannot be read (${(e as Error).message})` };
  }
  // An unreadable or damaged manifest commits nothing: writers recompute, readers refuse.
  const { value, problem } = unseal<Manifest>(text);
  if (!value) return { manifest: { steps: {} }, problem };
  return { manifest: { ...value, steps: value.steps ?? {} } };
}

export function readManifest(dir: string): Manifest {
  return loadManifest(dir).manifest;
}

/** Writes the manifest atomically (synced, then renamed), sealed: this is the commit point. */
export function writeManifest(dir: string, m: Manifest): void {
  makeDir(outputs.ours(dir));
  atomicWriteFile(outputs.manifest(dir), JSON.stringify(sealed(m), null, 2) + '\n');
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
  check: 'semdedup run',
  normalize: 'semdedup run',
  train: 'semdedup cluster',
  cluster: 'semdedup cluster',
  sort: 'semdedup sort',
  dedup: 'semdedup dedup',
  extract: 'semdedup run',
  exact: 'semdedup exact-duplicates',
};

/** What to rerun when `step`'s results are out of date. */
export function rerunHint(step: string): string {
  const cmd = RERUN[step] ?? `semdedup ${step}`;
  return cmd === 'semdedup run' || step === 'exact' ? `rerun ${cmd}` : `rerun ${cmd} and the steps after it (or semdedup run)`;
}

/** Why the record of `step` is not current (an input or, with `outputsToo`, an output changed), checked through the steps that made its inputs; undefined when it is. */
function staleReason(dir: string, m: Manifest, step: string, outputsToo: boolean, seen = new Set<string>(), memo = new Map<string, boolean>()): { file: string; message: string } | undefined {
  if (seen.has(step)) return undefined;
  seen.add(step);
  // Several steps record the same input (the embeddings): it is hashed once per check.
  const same = (s: FileStamp, p: string) => {
    const key = `${p}\0${s.sha256 ?? `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`}`;
    if (!memo.has(key)) memo.set(key, matches(s, p));
    return memo.get(key)!;
  };
  const rec = m.steps[step];
  if (!rec) return { file: outputs.manifest(dir), message: `${outputs.manifest(dir)}: no completed ${step} step is recorded in this output folder; ${rerunHint(step)}` };
  if (outputsToo)
    for (const [name, s] of Object.entries(rec.outputs)) {
      const p = locate(s, dir);
      if (!same(s, p))
        return { file: p, message: `${p} (${name}) ${existsSync(p) ? 'is not the file' : 'is missing, not the file'} the ${step} step completed; ${rerunHint(step)}` };
    }
  const producers = (s: FileStamp) =>
    s.rel === undefined ? [] : Object.entries(m.steps).filter(([other, r]) => other !== step && Object.values(r.outputs).some((o) => o.rel === s.rel)).map(([o]) => o);
  // The steps that made this step's inputs in this folder first (so the message names the
  // earliest step to rerun), then the inputs themselves.
  for (const s of Object.values(rec.inputs))
    for (const other of producers(s)) {
      const why = staleReason(dir, m, other, false, seen, memo);
      if (why) return why;
    }
  for (const [name, s] of Object.entries(rec.inputs)) {
    const p = locate(s, dir);
    if (!same(s, p)) {
      const from = producers(s)[0];
      return {
        file: p,
        message: existsSync(p)
          ? `${p} (${name}) changed since the ${step} step read it: the results of this output folder are out of date; ${rerunHint(from ?? step)}`
          : `${p} (${name}) is missing; the ${step} step read it: restore it, or ${rerunHint(from ?? step)}`,
      };
    }
  }
  return undefined;
}

/** True when the record of `step` is current: its outputs as committed, its inputs (through the steps that made them) unchanged. */
export function recordIsCurrent(dir: string, step: string, m: Manifest = readManifest(dir)): boolean {
  return !!m.steps[step] && staleReason(dir, m, step, true) === undefined;
}

/**
 * For a reader: the record of `step` when the manifest commits `files` (names of its outputs) as
 * they are on disk now, every input it read is unchanged, and so are the inputs of the steps that
 * made those inputs (so it belongs to the folder's current results and to the embeddings it was
 * made from), and its params agree with every entry of `want`. Otherwise an InputError saying
 * what differs and what to rerun.
 */
export function requireCommitted(dir: string, step: string, files: Record<string, string>, want: Record<string, unknown> = {}): StepRecord {
  const rerun = rerunHint(step);
  const { manifest: m, problem } = loadManifest(dir);
  const rec = m.steps[step];
  if (!rec) {
    const why = problem
      ? `is unusable: ${problem}, so nothing in this output folder is committed`
      : existsSync(outputs.manifest(dir)) ? `records no completed ${step} step in this output folder` : 'is missing: nothing in this output folder is committed';
    throw new InputError(`${outputs.manifest(dir)} ${why}; ${problem || !existsSync(outputs.manifest(dir)) ? 'rerun semdedup run' : rerun}`, { file: outputs.manifest(dir) });
  }
  for (const [name, file] of Object.entries(files)) {
    const s = rec.outputs[name];
    if (!existsSync(file)) throw new InputError(`${file} not found: ${rerun}`, { file });
    if (!s || (s.rel !== undefined && locate(s, dir) !== resolve(file)) || !matches(s, file))
      throw new InputError(`${file} is not the file the ${step} step completed (it was rewritten or changed since, e.g. by an interrupted run); ${rerun}`, { file });
  }
  const why = staleReason(dir, m, step, false);
  if (why) throw new InputError(why.message, { file: why.file });
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

/**
 * For a reader given a file to use in place of a step's recorded input (the embeddings of a
 * re-check, the ids of a list): the file must be the one the step read (the same content, or for
 * a large file the same file unchanged). Nothing is checked when the step recorded no such input.
 */
export function requireSameInput(dir: string, step: string, name: string, path: string, what: string, m: Manifest = readManifest(dir)): void {
  const s = m.steps[step]?.inputs[name];
  if (!s) return;
  if (!existsSync(path))
    throw new InputError(`${path}: the ${what} that the ${step} step of ${dir} read are missing; restore them, or ${rerunHint(step)} with other ${what}`, { file: path });
  if (!matches(s, path)) {
    const was = locate(s, dir);
    throw new InputError(
      `${path}: the ${what} ${resolve(path) === was ? 'changed since' : `are not the ones (${was}) that`} the ${step} step of ${dir} ${resolve(path) === was ? 'read them' : 'read'}; ` +
        `give the run's ${what}, or ${rerunHint(step)} with these`,
      { file: path },
    );
  }
}

/**
 * The files of one input given as several (embeddings shards, ids per shard) as inputs of a step:
 * `name` for one file, `name.0`, `name.1`, … for files read as one dataset (each stamped like a
 * single file).
 */
export function fileInputs(name: string, files: readonly string[], several = files.length > 1): Record<string, string> {
  if (!several && files.length === 1) return { [name]: files[0]! };
  return Object.fromEntries(files.map((f, i) => [`${name}.${i}`, f]));
}

/**
 * requireSameInput for an input that may be several files (recorded as `name`, or as `name.0`,
 * `name.1`, …): the files given must be as many as the step read, each the one it read, in order.
 * A changed, missing or swapped file is named. Nothing is checked when the step recorded no such input.
 */
export function requireSameInputs(dir: string, step: string, name: string, files: readonly string[], what: string): void {
  const m = readManifest(dir); // read once: thousands of shards are checked against it
  const rec = m.steps[step]?.inputs;
  if (!rec) return;
  if (rec[name]) {
    if (files.length !== 1)
      throw new InputError(`${files[0]} … (${files.length} files): the ${step} step of ${dir} read one file of ${what} (${locate(rec[name]!, dir)}); give that file, or ${rerunHint(step)} with these`, { file: files[0] });
    requireSameInput(dir, step, name, files[0]!, what, m);
    return;
  }
  let count = 0;
  while (rec[`${name}.${count}`]) count++;
  if (count === 0) return;
  if (files.length !== count)
    throw new InputError(
      `${files[0]}${files.length > 1 ? ` … (${files.length} files)` : ''}: the ${step} step of ${dir} read ${count} files of ${what}, not ${files.length}; give the run's ${what}, or ${rerunHint(step)} with these`,
      { file: files[0] },
    );
  files.forEach((f, i) => requireSameInput(dir, step, `${name}.${i}`, f, what, m));
}

/** Engine-owned names of outputs that depend on the run's parameters (eps, k) and may go stale. */
const OWNED: { dir: (d: string) => string; name: RegExp }[] = [
  { dir: (d) => d, name: /^kept_eps.+\.txt$/ },
  { dir: (d) => outputs.ours(d), name: /^kept_rows_eps.+\.npy$/ },
  { dir: (d) => outputs.ours(d), name: /^exact_duplicates\.npy$/ },
];

/**
 * Removes the outputs of earlier runs that no current record of the manifest commits (and that no
 * reader would accept): the kept lists and rows of other eps, an exact-duplicates file of other
 * results, sorted cluster files of another k or of a run that exported none. Only engine-owned
 * names, only regular files (never a link), only in the output folder and its sorted clusters
 * folder. Returns the paths removed.
 */
export function sweepStale(dir: string, sortedClustersDir?: string): string[] {
  const m = readManifest(dir);
  const committed = new Set<string>();
  const current = new Map<string, boolean>();
  const isCurrent = (step: string) => {
    if (!current.has(step)) current.set(step, recordIsCurrent(dir, step, m));
    return current.get(step)!;
  };
  for (const [step, rec] of Object.entries(m.steps))
    if (isCurrent(step)) for (const s of Object.values(rec.outputs)) committed.add(locate(s, dir));
  const removed: string[] = [];
  const remove = (p: string) => {
    try {
      if (!lstatSync(p).isFile()) return; // a link, a folder: not ours to remove
      unlinkSync(p);
      removed.push(p);
    } catch {
      // gone already, or not removable: readers refuse it anyway
    }
  };
  for (const o of OWNED) {
    const d = o.dir(dir);
    let names: string[] = [];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const n of names) if (o.name.test(n) && !committed.has(resolve(join(d, n)))) remove(join(d, n));
  }
  if (sortedClustersDir) {
    // The sort step's export: cluster_{c}.npy for c < k in the folder it exported to.
    const sort = m.steps.sort;
    const exp = sort && isCurrent('sort') ? (sort.stats?.exported as { dir?: string; k?: number } | undefined) : undefined;
    const keep = exp && exp.dir !== undefined && resolve(exp.dir) === resolve(sortedClustersDir) ? (exp.k ?? 0) : 0;
    let names: string[] = [];
    try {
      names = readdirSync(sortedClustersDir);
    } catch {
      names = [];
    }
    for (const n of names) {
      const c = /^cluster_(\d+)\.npy$/.exec(n);
      if (c && Number(c[1]) >= keep) remove(join(sortedClustersDir, c[0]));
    }
  }
  return removed;
}

/**
 * The embeddings a command is given for a run's folder (`source`, as the config names them: one
 * file, or shards as a list, glob or folder) must be the ones `step` read: every shard itself, or
 * the source of the normalised copy it read.
 */
export function checkRunEmbeddings(outputDir: string, step: string, source: string | readonly string[]): void {
  const inputs = readManifest(outputDir).steps[step]?.inputs;
  const rec = inputs?.embeddings ?? inputs?.['embeddings.0'];
  if (!rec) return;
  const files = resolveInputFiles(source);
  if (rec.rel !== undefined && rec.rel === relative(resolve(outputDir), outputs.normalized(resolve(outputDir))))
    requireSameInputs(outputDir, 'normalize', 'source', files, 'embeddings');
  else requireSameInputs(outputDir, step, 'embeddings', files, 'embeddings');
}
