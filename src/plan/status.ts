// `semdedup status`: what a plan's tasks are doing, from the plan and the tasks' state records.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { planPaths, type Plan, type Stage } from './plan.js';
import { staleRecords, taskStatus, type TaskStatus } from './state.js';

export interface TaskLine {
  stage: Stage;
  index: number;
  status: TaskStatus;
  job?: string;
  host?: string;
  since?: string;
  seconds?: number;
  log: string;
  error?: string;
}

export interface PlanStatus {
  plan: string;
  outputDir: string;
  created: string;
  rows: number;
  dim: number;
  k: number;
  stages: { stage: Stage; tasks: number; done: number; running: number; failed: number; pending: number }[];
  tasks: TaskLine[];
  complete: boolean;
  /** SLURM jobs of the last submission, if any. */
  jobs?: string[];
  /** Tasks of those jobs that squeue still lists (pending or running), when it answers. */
  queued?: number;
  staleRecords: number;
}

export function planStatus(plan: Plan): PlanStatus {
  const stages: PlanStatus['stages'] = [];
  const tasks: TaskLine[] = [];
  for (const st of plan.stages) {
    const row = { stage: st.name, tasks: st.tasks, done: 0, running: 0, failed: 0, pending: 0 };
    for (let i = 0; i < st.tasks; i++) {
      const { status, state } = taskStatus(plan, st.name, i);
      row[status]++;
      tasks.push({
        stage: st.name, index: i, status,
        ...(state?.job ? { job: state.job } : {}),
        ...(state?.host ? { host: state.host } : {}),
        ...(state?.startedAt ? { since: state.startedAt } : {}),
        ...(state?.seconds !== undefined ? { seconds: state.seconds } : {}),
        log: state?.log ?? planPaths.log(plan.outputDir, st.name, i),
        ...(status === 'failed' && state?.error ? { error: state.error } : {}),
      });
    }
    stages.push(row);
  }
  let jobs: string[] | undefined;
  let queued: number | undefined;
  const jp = planPaths.jobs(plan.outputDir);
  if (existsSync(jp)) {
    try {
      const j = JSON.parse(readFileSync(jp, 'utf8')) as { plan: string; jobs: { stage: string; job: string }[] };
      if (j.plan === plan.id) {
        jobs = j.jobs.map((x) => `${x.stage} ${x.job}`);
        const q = spawnSync('squeue', ['-h', '-r', '-j', j.jobs.map((x) => x.job).join(','), '-o', '%i'], { encoding: 'utf8' });
        if (!q.error && q.status === 0) queued = q.stdout.split('\n').filter((l) => l.trim()).length;
        else if (!q.error && /invalid job id/i.test(q.stderr ?? '')) queued = 0;
      }
    } catch {
      // not shown
    }
  }
  return {
    plan: plan.id, outputDir: plan.outputDir, created: plan.created, rows: plan.n, dim: plan.d, k: plan.k, stages, tasks,
    complete: stages.every((s) => s.done === s.tasks), ...(jobs ? { jobs } : {}), ...(queued !== undefined ? { queued } : {}), staleRecords: staleRecords(plan),
  };
}

function ago(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s.toFixed(0)} s` : s < 7200 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`;
}

export function formatStatus(s: PlanStatus): string {
  const out: string[] = [];
  out.push(`plan ${s.plan}: ${s.rows} rows × ${s.dim}, k = ${s.k}, in ${s.outputDir} (planned ${s.created})`);
  if (s.jobs) out.push(`SLURM jobs: ${s.jobs.join(', ')}`);
  out.push('');
  out.push(`  ${'stage'.padEnd(8)} ${'tasks'.padStart(5)} ${'done'.padStart(5)} ${'running'.padStart(8)} ${'failed'.padStart(7)} ${'pending'.padStart(8)}`);
  for (const r of s.stages)
    out.push(`  ${r.stage.padEnd(8)} ${String(r.tasks).padStart(5)} ${String(r.done).padStart(5)} ${String(r.running).padStart(8)} ${String(r.failed).padStart(7)} ${String(r.pending).padStart(8)}`);
  const running = s.tasks.filter((t) => t.status === 'running');
  const failed = s.tasks.filter((t) => t.status === 'failed');
  if (running.length) {
    out.push('', 'running:');
    for (const t of running) out.push(`  ${t.stage} ${t.index}: ${t.job ? `job ${t.job} ` : ''}on ${t.host}, for ${t.since ? ago(t.since) : '?'} (log ${t.log})`);
  }
  if (failed.length) {
    out.push('', 'failed:');
    for (const t of failed) out.push(`  ${t.stage} ${t.index}: ${t.error ?? 'failed'}${t.job ? ` (job ${t.job})` : ''}\n    log: ${t.log}`);
  }
  out.push('');
  const total = s.tasks.length;
  const done = s.tasks.filter((t) => t.status === 'done').length;
  if (s.complete) out.push(`complete: all ${total} tasks done; the results are in ${s.outputDir}`);
  else if (failed.length) out.push(`${done} of ${total} tasks done, ${failed.length} failed: fix the cause (see the logs), then rerun the same \`semdedup run\` command; it runs only what is not complete`);
  else if (s.queued) out.push(`${done} of ${total} tasks done, ${s.queued} in the SLURM queue (pending or running); the same \`semdedup run\` command follows them`);
  else if (running.length) out.push(`${done} of ${total} tasks done, ${running.length} running`);
  else out.push(`${done} of ${total} tasks done; rerun the same \`semdedup run\` command to run the rest`);
  if (s.staleRecords) out.push(`(${s.staleRecords} task records of an earlier plan of this folder are ignored)`);
  return out.join('\n');
}
