// The local executor: a plan's tasks as child processes of this machine, stage after stage, at
// most `workers` at a time (on a multi-GPU server one per GPU: each worker slot gets its own
// CUDA_VISIBLE_DEVICES). Each child runs the installed CLI (`semdedup task ...`) with its output in
// the task's log file; the same files and the same resume rules as under SLURM.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineFor, userEnv } from '../native/index.js';
import { planPaths, STAGES, type Plan, type Stage } from './plan.js';
import { pendingTasks, readState } from './state.js';

/** The installed CLI that tasks run. */
export const CLI_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'cli.js');

export interface FailedTask {
  stage: Stage;
  index: number;
  log: string;
  error: string;
  job?: string;
}

export interface ExecResult {
  ok: boolean;
  failed: FailedTask[];
  /** Tasks run (not counting those found complete). */
  ran: number;
  /** Set when the run returned without waiting (--no-wait). */
  submitted?: string[];
}

export interface LocalOptions {
  workers: number;
  /** Threads per task (default: the config's threads, else the cores shared out among workers). */
  threads?: number;
  /** Progress lines (default: none). */
  progress?: (line: string, final?: boolean) => void;
  signal?: AbortSignal;
}

/** The GPUs this machine shows (CUDA_VISIBLE_DEVICES when set, else nvidia-smi -L), by index. */
export function visibleGpus(): string[] {
  const env = process.env.CUDA_VISIBLE_DEVICES;
  if (env !== undefined) return env.split(',').map((s) => s.trim()).filter((s) => s !== '' && s !== '-1');
  const r = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return [];
  return r.stdout.split('\n').filter((l) => l.startsWith('GPU ')).map((_l, i) => String(i));
}

export function failureOf(plan: Plan, stage: Stage, index: number, fallback: string): FailedTask {
  const s = readState(plan, stage, index);
  const log = s?.log ?? planPaths.log(plan.outputDir, stage, index);
  const error = s?.state === 'failed' && s.error ? s.error : fallback;
  return { stage, index, log, error, ...(s?.job ? { job: s.job } : {}) };
}

export async function runLocal(plan: Plan, planPath: string, o: LocalOptions): Promise<ExecResult> {
  const workers = Math.max(1, Math.floor(o.workers));
  const cfgThreads = plan.config.threads ?? 0;
  const threads = o.threads ?? (cfgThreads > 0 ? cfgThreads : Math.max(1, Math.floor(cpus().length / workers)));
  // Worker slots get GPUs only where the engine resolved the device to CUDA.
  const gpus = engineFor(plan.config.device).device === 'cpu' ? [] : visibleGpus();
  mkdirSync(planPaths.logs(plan.outputDir), { recursive: true });
  let ran = 0;
  for (const stage of STAGES) {
    const pending = pendingTasks(plan, stage);
    const total = plan.stages.find((s) => s.name === stage)!.tasks;
    if (pending.length === 0) {
      o.progress?.(`${stage}: ${total}/${total} complete`, true);
      continue;
    }
    const failed: FailedTask[] = [];
    let next = 0;
    let running = 0;
    let done = total - pending.length;
    const report = (final = false) => o.progress?.(`${stage}: ${done}/${total} done, ${running} running${failed.length ? `, ${failed.length} failed` : ''}`, final);
    await new Promise<void>((resolveStage) => {
      const free: number[] = Array.from({ length: Math.min(workers, pending.length) }, (_, i) => i);
      const launch = () => {
        while (free.length > 0 && next < pending.length && !o.signal?.aborted) {
          const slot = free.shift()!;
          const index = pending[next++]!;
          const log = planPaths.log(plan.outputDir, stage, index);
          let fd: number;
          try {
            // A task's log is the engine's own file: a link planted there is not followed.
            fd = openSync(log, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
          } catch (e) {
            failed.push({ stage, index, log, error: (e as NodeJS.ErrnoException).code === 'ELOOP' ? `${log} is a symbolic link: a task's log is never followed; remove the link` : `${log}: ${(e as Error).message}` });
            free.push(slot);
            continue;
          }
          const env = { ...userEnv() };
          if (gpus.length > 0) env.CUDA_VISIBLE_DEVICES = gpus[slot % gpus.length]!;
          const child = spawn(process.execPath, [CLI_PATH, 'task', stage, String(index), '--plan', planPath, '--threads', String(threads), '--log', log], {
            stdio: ['ignore', fd, fd],
            env,
          });
          closeSync(fd);
          running++;
          ran++;
          const onAbort = () => child.kill('SIGTERM');
          o.signal?.addEventListener('abort', onAbort, { once: true });
          child.on('exit', (code, sig) => {
            o.signal?.removeEventListener('abort', onAbort);
            running--;
            if (code === 0) done++;
            else failed.push(failureOf(plan, stage, index, sig ? `killed by ${sig}` : `exited with status ${code}`));
            free.push(slot);
            report();
            if (running === 0 && (next >= pending.length || o.signal?.aborted)) resolveStage();
            else launch();
          });
          child.on('error', (e) => failed.push({ stage, index, log, error: e.message }));
        }
        if (running === 0) resolveStage();
      };
      launch();
      report();
    });
    report(true);
    if (failed.length > 0 || o.signal?.aborted) {
      if (o.signal?.aborted && failed.length === 0) for (const i of pendingTasks(plan, stage)) failed.push(failureOf(plan, stage, i, 'not run: interrupted'));
      return { ok: false, failed, ran };
    }
  }
  return { ok: true, failed: [], ran };
}
