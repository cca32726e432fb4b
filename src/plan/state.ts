// The state of each task of a plan: one small sealed JSON record per task (semdedup/plan/state/),
// written atomically by the task itself when it starts, completes or fails. A task is complete when
// its record says done for this plan and every output it lists is still the file it wrote: the
// same checksum (or, for a file too large to hash, the same inode, size and times), as the
// manifest commits files; anything else (no record, a damaged record, running, failed, another
// plan, a changed output) means it runs again. A task reads a part only when it is the part its
// task recorded (readPart), so an edited part is never used.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { InputError } from '../errors.js';
import { atomicWriteFile, pidAlive } from '../io/atomic.js';
import { matches, sealed, stamp, unseal, type FileStamp } from '../manifest.js';
import { ensureOutputDir } from '../steps/common.js';
import { planPaths, type Plan, type Stage } from './plan.js';

export type OutputStamp = FileStamp;

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

/** The stamp of a task's output (a checksum for a file up to the manifest's hashing limit). */
export function outputStamp(path: string): OutputStamp {
  return stamp(path);
}

/** The record of a task of this plan; undefined when there is none, it is of another plan, or it is damaged. */
export function readState(plan: Plan, stage: Stage, index: number): TaskState | undefined {
  const p = planPaths.state(plan.outputDir, stage, index);
  if (!existsSync(p)) return undefined;
  try {
    const s = unseal<TaskState>(readFileSync(p, 'utf8')).value;
    return s && s.plan === plan.id && s.stage === stage && s.index === index ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeState(plan: Plan, s: TaskState): void {
  ensureOutputDir(planPaths.stateDir(plan.outputDir));
  atomicWriteFile(planPaths.state(plan.outputDir, s.stage, s.index), JSON.stringify(sealed(s), null, 2) + '\n');
}

/** Whether the outputs a done record lists are all still the files it wrote. */
export function outputsIntact(s: TaskState): boolean {
  return Object.values(s.outputs ?? {}).every((o) => matches(o, o.path));
}

/**
 * The path of output `name` of task `index` of `stage`, when that task is done and the file is
 * the one it recorded; otherwise an InputError saying that rerunning the planned run reruns it.
 */
export function verifiedOutput(plan: Plan, stage: Stage, index: number, name: string): string {
  const s = readState(plan, stage, index);
  const o = s?.state === 'done' ? s.outputs?.[name] : undefined;
  const where = planPaths.state(plan.outputDir, stage, index);
  if (!s || s.state !== 'done' || !o)
    throw new InputError(`${where}: ${stage} task ${index} has not completed (its record is missing, damaged or not done); rerun the planned run (semdedup run --executor ...)`, { file: where });
  if (!matches(o, o.path))
    throw new InputError(
      `${o.path} ${existsSync(o.path) ? 'is not the file' : 'is missing, not the file'} ${stage} task ${index} wrote (it was changed since); rerun the planned run (semdedup run --executor ...), which reruns that task`,
      { file: o.path },
    );
  return o.path;
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
      const s = unseal<TaskState>(readFileSync(`${dir}/${f}`, 'utf8')).value;
      if (!s || s.plan !== plan.id) n++;
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
