// A planned run: the pipeline as stages of idempotent tasks over the output folder, for a scheduler
// (SLURM job arrays) or local worker processes. The plan (semdedup/plan.json) names the stages,
// their task counts and row or cluster ranges, and the config every task reads; each task records
// its state in semdedup/plan/state/<stage>.<index>.json. Outputs are the single-process run's,
// byte for byte (docs/algorithm.md, "Planned runs").
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { applyDefaultK, requireKeys, type PartialResolved } from '../config.js';
import { embeddingsFiles, embeddingsLayout } from '../embeddings.js';
import { embeddingsSpecOf } from '../inputs.js';
import { atomicWriteFile } from '../io/atomic.js';
import { outputs } from '../layout.js';
import { ensureOutputDir } from '../steps/common.js';
import { sealed, unseal } from '../manifest.js';

export const STAGES = ['train', 'assign', 'group', 'dedup', 'extract'] as const;
export type Stage = (typeof STAGES)[number];

/** Row ranges of the assignment start at multiples of this (the final assignment's block). */
export const ROW_ALIGN = 4096;

export interface StagePlan {
  name: Stage;
  tasks: number;
  /** assign: row ranges; group: cluster ranges ([begin, end) per task). */
  ranges?: [number, number][];
}

export interface Plan {
  format: 1;
  /** A hash of everything that determines the tasks' outputs. */
  id: string;
  created: string;
  outputDir: string;
  /** The resolved config (absolute paths), as every task reads it. */
  config: PartialResolved;
  n: number;
  d: number;
  k: number;
  stages: StagePlan[];
}

/** The files of a plan, under the run folder's plan folder (layout.ts: outputs.plan, outputs.planRoot). */
export const planPaths = {
  plan: (dir: string) => outputs.plan(dir),
  root: (dir: string) => outputs.planRoot(dir),
  state: (dir: string, stage: Stage, i: number) => join(outputs.planRoot(dir), 'state', `${stage}.${i}.json`),
  stateDir: (dir: string) => join(outputs.planRoot(dir), 'state'),
  parts: (dir: string, stage: Stage) => join(outputs.planRoot(dir), 'parts', stage),
  part: (dir: string, stage: Stage, name: string, i: number) => join(outputs.planRoot(dir), 'parts', stage, `${name}.${i}.npy`),
  logs: (dir: string) => join(outputs.planRoot(dir), 'logs'),
  log: (dir: string, stage: Stage, i: number) => join(outputs.planRoot(dir), 'logs', `${stage}.${i}.log`),
  slurm: (dir: string) => join(outputs.planRoot(dir), 'slurm'),
  jobs: (dir: string) => join(outputs.planRoot(dir), 'slurm', 'jobs.json'),
};

/** Row ranges of `tasks` tasks over n rows, each starting at a multiple of ROW_ALIGN (fewer tasks when n is small). */
export function rowRanges(n: number, tasks: number): [number, number][] {
  const chunk = Math.max(ROW_ALIGN, Math.ceil(n / tasks / ROW_ALIGN) * ROW_ALIGN);
  const out: [number, number][] = [];
  for (let b = 0; b < n; b += chunk) out.push([b, Math.min(n, b + chunk)]);
  if (out.length === 0) out.push([0, 0]);
  return out;
}

/** Cluster ranges of `tasks` tasks over k clusters (equal counts). */
export function clusterRanges(k: number, tasks: number): [number, number][] {
  const t = Math.max(1, Math.min(tasks, k));
  const out: [number, number][] = [];
  for (let i = 0; i < t; i++) out.push([Math.floor((i * k) / t), Math.floor(((i + 1) * k) / t)]);
  return out;
}

function absolute(cfg: PartialResolved): PartialResolved {
  const c = { ...cfg } as Record<string, unknown>;
  for (const key of ['embeddings', 'ids', 'outputDir', 'centroids', 'sortedClustersDir'])
    if (typeof c[key] === 'string') c[key] = resolve(c[key] as string);
    else if (Array.isArray(c[key])) c[key] = (c[key] as string[]).map((p) => resolve(p));
  return c as PartialResolved;
}

export interface PlanOptions {
  /** Tasks of the assign and dedup stages. */
  tasks: number;
  /** Tasks of the group stage (default: tasks). */
  groupTasks?: number;
}

/**
 * The plan for a config, which the entry (`semdedup run`: validateInputs) has checked as it checks a
 * single run's: only the task counts are checked here.
 */
export function makePlan(cfg: PartialResolved, opts: PlanOptions): Plan {
  if (cfg.k === undefined && cfg.embeddings) {
    cfg = { ...cfg };
    applyDefaultK(cfg, embeddingsLayout(embeddingsSpecOf(cfg)).n);
  }
  const c = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'semdedup run');
  if (!Number.isInteger(opts.tasks) || opts.tasks < 1) throw new ConfigError(`--tasks must be a positive integer, got ${opts.tasks}`, { key: 'tasks' });
  const layout = embeddingsLayout(embeddingsSpecOf(cfg));
  const config = absolute(cfg);
  const assign = rowRanges(layout.n, opts.tasks);
  // Tasks are capped by the work: every task gets at least ROW_ALIGN rows, as an assign task does
  // (more would be processes with next to nothing to do), and a group task at least one cluster.
  const byRows = Math.max(1, Math.ceil(layout.n / ROW_ALIGN));
  const group = clusterRanges(c.k, Math.min(byRows, opts.groupTasks ?? opts.tasks));
  const dedupTasks = Math.min(byRows, opts.tasks);
  const stages: StagePlan[] = [
    { name: 'train', tasks: 1 },
    { name: 'assign', tasks: assign.length, ranges: assign },
    { name: 'group', tasks: group.length, ranges: group },
    { name: 'dedup', tasks: dedupTasks },
    { name: 'extract', tasks: 1 },
  ];
  // What determines the outputs: the config (less threads and the config files' names), the input's
  // stamp, the stages. The device is included: CPU and GPU kernels round differently.
  const { threads: _t, files: _f, ...det } = config as PartialResolved & { threads?: number };
  const input = embeddingsFiles(layout).map((f) => ({ path: resolve(f), ...statOf(f) }));
  const id = createHash('sha256').update(JSON.stringify({ det, input: input.length === 1 ? input[0] : input, stages })).digest('hex').slice(0, 16);
  return { format: 1, id, created: new Date().toISOString(), outputDir: resolve(c.outputDir), config, n: layout.n, d: layout.d, k: c.k, stages };
}

function statOf(path: string): { size: number; mtimeMs: number } {
  try {
    const st = statSync(path);
    return { size: st.size, mtimeMs: Math.round(st.mtimeMs) };
  } catch (e) {
    throw new InputError(`${path}: ${(e as Error).message}`, { file: path });
  }
}

/**
 * Writes the plan into its output folder, keeping the existing one when it is the same plan (so
 * its completed tasks stay complete). Returns the plan in force.
 */
export function savePlan(plan: Plan): { plan: Plan; kept: boolean } {
  const path = planPaths.plan(plan.outputDir);
  if (existsSync(path)) {
    try {
      const old = unseal<Plan>(readFileSync(path, 'utf8')).value;
      if (old && old.id === plan.id) return { plan: old, kept: true };
    } catch {
      // an unreadable or damaged plan is replaced
    }
  }
  ensureOutputDir(planPaths.root(plan.outputDir));
  atomicWriteFile(path, JSON.stringify(sealed(plan), null, 2) + '\n');
  return { plan, kept: false };
}

export function readPlan(path: string): Plan {
  if (!existsSync(path)) throw new InputError(`${path}: no plan here (a planned run writes semdedup/plan.json in its output folder)`, { file: path });
  let p: Plan;
  try {
    const { value, problem } = unseal<Plan>(readFileSync(path, 'utf8'));
    if (!value) throw new Error(problem);
    p = value;
  } catch (e) {
    throw new InputError(`${path}: not a readable plan: ${(e as Error).message}; rerun the planned run (semdedup run --executor ...) to write it again`, { file: path });
  }
  if (p.format !== 1 || !Array.isArray(p.stages)) throw new InputError(`${path}: not a plan of this version of semdedup`, { file: path });
  return p;
}

export function stageOf(plan: Plan, stage: string): StagePlan {
  const s = plan.stages.find((x) => x.name === stage);
  if (!s) throw new ConfigError(`no stage '${stage}' in the plan; the stages are ${plan.stages.map((x) => x.name).join(', ')}`, { key: 'stage' });
  return s;
}
