// The SLURM executor: one sbatch script per stage (a job array over the stage's tasks that are not
// complete), chained with --dependency=afterok, submitted with sbatch; then followed with squeue
// (and the tasks' own state records) until the last stage completes or a task fails. A rerun
// submits only what is not complete; while the jobs of an earlier submission of the same plan are
// still queued, it follows them instead of submitting again.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SemDedupError } from '../errors.js';
import { atomicWriteFile } from '../io/atomic.js';
import { planPaths, STAGES, type Plan, type Stage } from './plan.js';
import { isComplete, pendingTasks, readState } from './state.js';
import { CLI_PATH, failureOf, type ExecResult, type FailedTask } from './local.js';

export interface SlurmOptions {
  /** Extra sbatch options for every stage (e.g. --partition=gpu --gres=gpu:1). */
  sbatch: string[];
  /** Follow the jobs until the end (false: submit and return). */
  wait: boolean;
  /** Seconds between two looks at the queue. */
  pollSeconds?: number;
  progress?: (line: string, final?: boolean) => void;
  signal?: AbortSignal;
}

interface Submitted {
  plan: string;
  jobs: { stage: Stage; job: string; tasks: number[] }[];
}

/** Splits an --sbatch string into arguments (quotes group words; no other shell syntax). */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

function command(cmd: string, args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new SemDedupError('ERR_BACKEND', `${cmd} not found: --executor slurm needs SLURM's commands (sbatch, squeue, scancel) on PATH`);
    throw new SemDedupError('ERR_BACKEND', `${cmd}: ${r.error.message}`);
  }
  return { ok: r.status === 0, out: r.stdout ?? '', err: (r.stderr ?? '').trim() };
}

/** Array indices as sbatch wants them: 0-3,5,7-9. */
export function arraySpec(indices: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < indices.length; ) {
    let j = i;
    while (j + 1 < indices.length && indices[j + 1] === indices[j]! + 1) j++;
    parts.push(j > i ? `${indices[i]}-${indices[j]}` : `${indices[i]}`);
    i = j + 1;
  }
  return parts.join(',');
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * `s` as one word of a POSIX shell: single-quoted (a quote inside as '\''), so that the shell
 * expands nothing in it ($, backticks, globs, newlines are literal). A NUL cannot be passed and a
 * string that is not well-formed Unicode would not be written as it is: both are refused.
 */
export function shellQuote(s: string): string {
  if (s.includes('\0') || LONE_SURROGATE.test(s))
    throw new SemDedupError('ERR_CONFIG', `${JSON.stringify(s)}: a path handed to a shell script must be well-formed Unicode without NUL`);
  return /^[A-Za-z0-9_./=:,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The --output of a stage's jobs, as sbatch reads it: SLURM expands %-patterns in it (%a: the
 * array index), so a % of the path is written %%; SLURM cannot write to a path holding a
 * backslash (it turns off the patterns and the launch fails), so there the jobs' own output goes
 * only through the script's redirection and SLURM's messages are dropped.
 */
export function slurmOutput(logsDir: string, stage: Stage): string {
  if (logsDir.includes('\\')) return '/dev/null';
  return join(logsDir.replace(/%/g, '%%'), `${stage}.%a.log`);
}

/**
 * The batch script of one stage. Every value that comes from the user (the paths) is a
 * single-quoted shell word: nothing in a path is run or expanded. The log file is the same one
 * that SLURM's --output names (appended to by both).
 */
export function stageScript(plan: Plan, planPath: string, stage: Stage, entry: { node: string; cli: string } = { node: process.execPath, cli: CLI_PATH }): string {
  // The stage and the plan's id are the engine's own words, but the plan is read back from a folder
  // others may write: written into the script only as what they must be (a stage name, hex).
  if (!(STAGES as readonly string[]).includes(stage) || !/^[0-9a-f]{1,64}$/.test(plan.id))
    throw new SemDedupError('ERR_CONFIG', `plan ${JSON.stringify(plan.id)}, stage ${JSON.stringify(stage)}: not a plan this engine wrote; remove semdedup/plan and run again`);
  const logs = planPaths.logs(plan.outputDir);
  return [
    '#!/bin/bash',
    `#SBATCH --job-name=semdedup-${stage}`,
    `#SBATCH --open-mode=append`,
    `# One task of stage ${stage} of plan ${plan.id}; a complete task does nothing.`,
    `plan=${shellQuote(planPath)}`,
    `log=${shellQuote(logs)}/${stage}."$SLURM_ARRAY_TASK_ID".log`,
    `exec >>"$log" 2>&1`,
    `exec ${shellQuote(entry.node)} ${shellQuote(entry.cli)} task ${stage} "$SLURM_ARRAY_TASK_ID" --plan "$plan" --log "$log"`,
    '',
  ].join('\n');
}

function jobsPath(plan: Plan): string {
  return planPaths.jobs(plan.outputDir);
}

/**
 * The jobs of this plan still in the queue: 'jobid_index' -> state; undefined when squeue could not
 * answer (the controller busy or restarting: ask again later).
 */
function queued(jobs: string[]): Map<string, string> | undefined {
  const m = new Map<string, string>();
  if (jobs.length === 0) return m;
  const r = command('squeue', ['-h', '-r', '-j', jobs.join(','), '-o', '%i %T']);
  if (!r.ok) {
    // squeue refuses job ids it no longer knows (finished long ago): then none of them is queued
    if (/invalid job id/i.test(r.err)) return m;
    return undefined;
  }
  for (const line of r.out.split('\n')) {
    const [id, st] = line.trim().split(/\s+/);
    if (id && st) m.set(id, st);
  }
  return m;
}

function cancel(jobs: string[]): void {
  if (jobs.length) command('scancel', jobs);
}

export async function runSlurm(plan: Plan, planPath: string, o: SlurmOptions): Promise<ExecResult> {
  const sdir = planPaths.slurm(plan.outputDir);
  mkdirSync(sdir, { recursive: true });
  mkdirSync(planPaths.logs(plan.outputDir), { recursive: true });
  let sub: Submitted | undefined;
  if (existsSync(jobsPath(plan))) {
    try {
      const prev = JSON.parse(readFileSync(jobsPath(plan), 'utf8')) as Submitted;
      if (prev.plan === plan.id && (queued(prev.jobs.map((j) => j.job))?.size ?? 1) > 0) {
        sub = prev;
        o.progress?.(`jobs ${prev.jobs.map((j) => j.job).join(', ')} of this plan are still queued: following them`, true);
      }
    } catch {
      // an unreadable record: submit again
    }
  }
  if (!sub) {
    sub = { plan: plan.id, jobs: [] };
    let after: string | undefined;
    for (const stage of STAGES) {
      const pending = pendingTasks(plan, stage);
      if (pending.length === 0) continue;
      const script = join(sdir, `${stage}.sbatch`);
      // Written atomically (a new file renamed over the name): a link planted there is replaced, not followed.
      atomicWriteFile(script, stageScript(plan, planPath, stage));
      const args = ['--parsable', `--array=${arraySpec(pending)}`, `--output=${slurmOutput(planPaths.logs(plan.outputDir), stage)}`, ...(after ? [`--dependency=afterok:${after}`, '--kill-on-invalid-dep=yes'] : []), ...o.sbatch, script];
      const r = command('sbatch', args);
      if (!r.ok) {
        cancel(sub.jobs.map((j) => j.job));
        throw new SemDedupError('ERR_BACKEND', `sbatch ${args.join(' ')} failed: ${r.err || r.out.trim()}`);
      }
      const job = r.out.trim().split(';')[0]!;
      sub.jobs.push({ stage, job, tasks: pending });
      after = job;
    }
    if (sub.jobs.length) atomicWriteFile(jobsPath(plan), JSON.stringify(sub, null, 2) + '\n');
    if (sub.jobs.length) o.progress?.(`submitted ${sub.jobs.map((j) => `${j.stage} ${j.job} (${j.tasks.length} task${j.tasks.length > 1 ? 's' : ''})`).join(', ')}`, true);
  }
  const ids = sub.jobs.map((j) => j.job);
  if (!o.wait) return { ok: true, failed: [], ran: 0, submitted: ids };
  const poll = (o.pollSeconds ?? 2) * 1000;
  let last = '';
  let cancelled = false;
  let unanswered = 0;
  for (;;) {
    if (o.signal?.aborted) {
      o.progress?.(`interrupted: the jobs stay queued (${ids.join(', ')}); \`semdedup status\` follows them, scancel ${ids.join(' ')} stops them`, true);
      return { ok: false, failed: [], ran: 0, submitted: ids };
    }
    const q = queued(ids);
    if (!q) {
      if (++unanswered > 30) throw new SemDedupError('ERR_BACKEND', `squeue has not answered for a minute; the jobs (${ids.join(', ')}) stay queued: \`semdedup status ${plan.outputDir}\` follows them`);
      await new Promise((r) => setTimeout(r, poll));
      continue;
    }
    unanswered = 0;
    const failed: FailedTask[] = [];
    const parts: string[] = [];
    let all = true;
    for (const st of plan.stages) {
      let done = 0;
      let running = 0;
      const job = sub.jobs.find((j) => j.stage === st.name);
      for (let i = 0; i < st.tasks; i++) {
        if (isComplete(plan, st.name, i)) {
          done++;
          continue;
        }
        all = false;
        const s = readState(plan, st.name, i);
        const inQueue = job ? q.get(`${job.job}_${i}`) : undefined;
        if (inQueue === 'RUNNING' || inQueue === 'COMPLETING') running++;
        if (s?.state === 'failed' && !inQueue) failed.push(failureOf(plan, st.name, i, 'failed'));
        else if (!inQueue && job && job.tasks.includes(i) && !isComplete(plan, st.name, i))
          failed.push(failureOf(plan, st.name, i, s ? `the job ended without recording completion (cancelled or killed; job ${job.job}_${i})` : `the job ended before the task started (job ${job.job}_${i}); see its log`));
      }
      parts.push(`${st.name} ${done}/${st.tasks}${running ? ` (${running} running)` : ''}`);
    }
    const line = parts.join(', ');
    // Only the earliest failing stage's tasks failed: the later ones were cancelled for it.
    if (failed.length > 0) failed.splice(0, failed.length, ...failed.filter((f) => f.stage === failed[0]!.stage));
    if (all) {
      o.progress?.(line, true);
      return { ok: true, failed: [], ran: sub.jobs.reduce((a, j) => a + j.tasks.length, 0), submitted: ids };
    }
    if (failed.length > 0) {
      // The stages after the first failed one depend on it (afterok) and would never start: cancel
      // them; the failed stage's other tasks finish (their work is kept), then the run reports.
      const first = STAGES.indexOf(failed[0]!.stage);
      const later = sub.jobs.filter((j) => STAGES.indexOf(j.stage) > first).map((j) => j.job);
      if (!cancelled && later.length) cancel(later);
      cancelled = true;
      const stillRunning = [...q.keys()].some((id) => !later.includes(id.split('_')[0]!));
      if (!stillRunning) {
        o.progress?.(line, true);
        return { ok: false, failed, ran: 0, submitted: ids };
      }
    }
    if (line !== last) {
      o.progress?.(line);
      last = line;
    }
    if (q.size === 0 && failed.length === 0) {
      // Nothing queued, nothing failed on record, not complete: tasks never submitted (complete when
      // submitted, since changed); a rerun submits them.
      const missing: FailedTask[] = [];
      for (const st of plan.stages) for (const i of pendingTasks(plan, st.name)) missing.push(failureOf(plan, st.name, i, 'not complete and not queued'));
      return { ok: false, failed: missing, ran: 0, submitted: ids };
    }
    await new Promise((r) => setTimeout(r, poll));
  }
}
