// The manifest of an output folder (semdedup/manifest.json): the config and engine of the run
// that wrote it, and for every completed step its parameters and the stamps of its inputs and
// outputs, from which a rerun decides what is current.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { atomicWriteFile } from './io/atomic.js';
import { outputs } from './layout.js';
import { nativeInfo } from './native.js';

export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

export function stamp(path: string): FileStamp {
  const st = statSync(path);
  return { path: resolve(path), size: st.size, mtimeMs: Math.round(st.mtimeMs) };
}

export function sameStamp(a: FileStamp | undefined, b: FileStamp): boolean {
  return !!a && a.path === b.path && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

export interface Manifest {
  /** The config of the last run that wrote this folder (canonical keys) and its files. */
  config?: Record<string, unknown>;
  configFiles?: string[];
  engine: { name: 'semdedup'; version: string; faiss: string; blasCore: string };
  /** A planned run's plan (semdedup/plan.json; the tasks' states beside it in semdedup/plan/state/). */
  plan?: { path: string; id: string; tasks: Record<string, number> };
  steps: Record<string, { completedAt: string; params: Record<string, unknown>; inputs: Record<string, FileStamp>; outputs: Record<string, FileStamp>; stats?: Record<string, unknown> }>;
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
    return { engine, steps: {} }; // an unreadable manifest only costs recomputation
  }
}

export function writeManifest(dir: string, m: Manifest): void {
  mkdirSync(dirname(outputs.manifest(dir)), { recursive: true });
  atomicWriteFile(outputs.manifest(dir), JSON.stringify(m, null, 2) + '\n');
}

/** Records a completed step with the stamps of its inputs and outputs. */
export function recordStep(
  dir: string,
  step: string,
  params: Record<string, unknown>,
  inputs: Record<string, string>,
  outs: Record<string, string>,
  stats?: Record<string, unknown>,
): void {
  const m = readManifest(dir);
  const st = (rec: Record<string, string>) => Object.fromEntries(Object.entries(rec).map(([k, p]) => [k, stamp(p)]));
  m.steps[step] = { completedAt: new Date().toISOString(), params, inputs: st(inputs), outputs: st(outs), ...(stats ? { stats } : {}) };
  writeManifest(dir, m);
}

/** True when a step completed with these params and its inputs and outputs are unchanged since. */
export function stepIsCurrent(dir: string, step: string, params: Record<string, unknown>, inputs: Record<string, string>): boolean {
  const rec = readManifest(dir).steps[step];
  if (!rec) return false;
  if (JSON.stringify(rec.params) !== JSON.stringify(params)) return false;
  for (const [k, p] of Object.entries(inputs)) {
    if (!existsSync(p) || !sameStamp(rec.inputs[k], stamp(p))) return false;
  }
  for (const s of Object.values(rec.outputs)) {
    if (!existsSync(s.path) || !sameStamp(s, stamp(s.path))) return false;
  }
  return true;
}

