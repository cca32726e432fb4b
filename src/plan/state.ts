// The state of each task of a plan: one small JSON record per task (semdedup/plan/state/), written
// atomically by the task itself when it starts, completes or fails. A task is complete when its
// record says done for this plan and every output it lists is still there with the same size and
// modification time; anything else (no record, running, failed, another plan, a changed output)
// means it runs again.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { atomicWriteFile, pidAlive } from '../io/atomic.js';
import { ensureOutputDir } from '../steps/common.js';
import { planPaths, type Plan, type Stage } from './plan.js';

export interface OutputStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface TaskState {
  plan: string;
  stage: Stage;
  index: number;
  state: 'running' | 'done' | 'failed';
  host: string;
  pid: number;
  /** The scheduler's job (SLURM: jobid_arrayindex). */
  job?: string;
  startedAt: string;
  finishedAt?: string;
  seconds?: number;
  log?: string;
  error?: string;
  outputs?: Record<string, OutputStamp>;
  info?: Record<string, unknown>;
}

export function outputStamp(path: string): OutputStamp {
  const st = statSync(path);
  return { path, size: st.size, mtimeMs: Math.round(st.mtimeMs) };
}

export function readState(plan: Plan, stage: Stage, index: number): TaskState | undefined {
  const p = planPaths.state(plan.outputDir, stage, index);
  if (!existsSync(p)) return undefined;
  try {
    const s = JSON.parse(readFileSync(p, 'utf8')) as TaskState;
    return s.plan === plan.id ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeState(plan: Plan, s: TaskState): void {
  ensureOutputDir(planPaths.stateDir(plan.outputDir));
  atomicWriteFile(planPaths.state(plan.outputDir, s.stage, s.index), JSON.stringify(s, null, 2) + '\n');
}

/** Whether the outputs a done record lists are all still as recorded. */
export function outputsIntact(s: TaskState): boolean {
  for (const o of Object.values(s.outputs ?? {})) {
    if (!existsSync(o.path)) return false;
    const st = statSync(o.path);
    if (st.size !== o.size || Math.round(st.mtimeMs) !== o.mtimeMs) return false;
  }
  return true;
}

export function isComplete(plan: Plan, stage: Stage, index: number): boolean {
  const s = readState(plan, stage, index);
  return !!s && s.state === 'done' && outputsIntact(s);
}

export type TaskStatus = 'done' | 'running' | 'failed' | 'pending';

/** The status of one task as a reader sees it (a done task whose outputs changed is pending). */
export function taskStatus(plan: Plan, stage: Stage, index: number): { status: TaskStatus; state?: TaskState } {
  const s = readState(plan, stage, index);
  if (!s) return { status: 'pending' };
  if (s.state === 'done') return outputsIntact(s) ? { status: 'done', state: s } : { status: 'pending', state: s };
  if (s.state === 'running' && s.host === hostname() && !pidAlive(s.pid))
    return { status: 'failed', state: { ...s, error: s.error ?? 'the process ended without recording completion (killed?)' } };
  return { status: s.state, state: s };
}

/** The indices of a stage's tasks that are not complete. */
export function pendingTasks(plan: Plan, stage: Stage): number[] {
  const st = plan.stages.find((s) => s.name === stage)!;
  const out: number[] = [];
  for (let i = 0; i < st.tasks; i++) if (!isComplete(plan, stage, i)) out.push(i);
  return out;
}

/** Records of other plans in the state folder (a changed config): listed for `status`. */
export function staleRecords(plan: Plan): number {
  const dir = planPaths.stateDir(plan.outputDir);
  if (!existsSync(dir)) return 0;
  let n = 0;
  for (const f of readdirSync(dir)) {
    try {
      const s = JSON.parse(readFileSync(`${dir}/${f}`, 'utf8')) as TaskState;
      if (s.plan !== plan.id) n++;
    } catch {
      n++;
    }
  }
  return n;
}

export function newState(plan: Plan, stage: Stage, index: number, log?: string): TaskState {
  const job = process.env.SLURM_ARRAY_JOB_ID
    ? `${process.env.SLURM_ARRAY_JOB_ID}_${process.env.SLURM_ARRAY_TASK_ID ?? ''}`
    : process.env.SLURM_JOB_ID;
  return {
    plan: plan.id, stage, index, state: 'running', host: hostname(), pid: process.pid,
    ...(job ? { job } : {}), startedAt: new Date().toISOString(), ...(log ? { log } : {}),
  };
}
