// The actions of planned runs (declared in ./cli.ts, which imports this module when one runs):
// `semdedup run --executor local|slurm`, `semdedup task` (one task of a plan, what the executors
// run) and `semdedup status`.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { cpus } from 'node:os';
import { ConfigError, SemDedupError } from '../errors.js';
import { loadConfig, loadRunConfig, options, print } from '../cli-common.js';
import { makePlan, planPaths, readPlan, ROW_ALIGN, savePlan, STAGES, type Plan, type Stage } from './plan.js';
import { runTask } from './tasks.js';
import { runLocal, type ExecResult } from './local.js';
import { runSlurm, splitArgs } from './slurm.js';
import { formatStatus, planStatus } from './status.js';
import { capThreads, parseThreads, validateInputs } from '../validate.js';
import { checkContents } from '../steps/check.js';
import { refuseLinks } from '../io/atomic.js';
import { outputs } from '../layout.js';
import { embeddingsSpecOf, resolveIds } from '../inputs.js';
import { lockPlannedRun } from '../lock.js';

export interface RunOpts extends Record<string, unknown> {
  executor?: 'process' | 'local' | 'slurm';
  tasks?: string;
  workers?: string;
  sbatch?: string;
  wait?: boolean;
  quiet?: boolean;
}

function posInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer, got '${v}'`, { key: flag.replace(/^--/, '') });
  return n;
}

function progressLine(quiet: boolean | undefined): (line: string, final?: boolean) => void {
  if (quiet) return () => {};
  const tty = process.stderr.isTTY;
  return (line, final) => {
    if (tty) process.stderr.write(`\r\x1b[2K  ${line}${final ? '\n' : ''}`);
    else process.stderr.write(`  ${line}\n`);
  };
}

function failureMessage(plan: Plan, r: ExecResult, rerun: string): string {
  const lines = r.failed.map((f) => `  ${f.stage} task ${f.index}${f.job ? ` (job ${f.job})` : ''}: ${f.error}\n    log: ${f.log}`);
  return `${r.failed.length} task${r.failed.length > 1 ? 's' : ''} failed:\n${lines.join('\n')}\n` +
    `Completed tasks are kept: after fixing the cause, ${rerun} runs only what is not complete (\`semdedup status ${plan.outputDir}\` shows where it stands).`;
}

/** `semdedup run --executor local|slurm`: plans the run and executes its tasks. */
export async function runPlanned(o: RunOpts): Promise<void> {
  const cfg = await loadRunConfig(o, 'run');
  const executor = o.executor!;
  if (executor === 'local' && o.sbatch !== undefined) throw new ConfigError('--sbatch is an option of --executor slurm', { key: 'sbatch' });
  if (executor === 'slurm' && o.workers !== undefined) throw new ConfigError('--workers is an option of --executor local (under SLURM, --tasks sets the array sizes)', { key: 'workers' });
  const workers = posInt(o.workers, '--workers') ?? (executor === 'local' ? Math.max(1, Math.min(cpus().length, 4)) : 1);
  const tasks = posInt(o.tasks, '--tasks') ?? (executor === 'local' ? workers : 8);
  // Every input checked as a single run checks it (the same validateInputs; the ids read and
  // checked; bad rows refused), before the plan or its folder is written.
  validateInputs(cfg, 'run');
  resolveIds(cfg, undefined);
  const made = makePlan(cfg, { tasks });
  await checkContents(embeddingsSpecOf(cfg), { threads: capThreads(cfg.threads), outputDir: made.outputDir, normalize: cfg.normalize ?? 'auto' });
  const most = Math.max(...made.stages.map((s) => s.tasks));
  if (tasks > most && !o.quiet)
    process.stderr.write(`semdedup: --tasks ${tasks} is more than the work holds (${made.n} rows, ${made.k} clusters: at most ${most} task${most > 1 ? 's' : ''} a stage, one per ${ROW_ALIGN} rows); planning ${made.stages.map((s) => `${s.name} ${s.tasks}`).join(', ')}\n`);
  refuseLinks(outputs.ours(made.outputDir));
  // The executor holds the folder for the whole planned run (shared with its tasks; see lock.ts).
  const lock = lockPlannedRun(made.outputDir);
  try {
    await runPlannedLocked(o, made, executor, workers);
  } finally {
    lock.release();
  }
}

async function runPlannedLocked(o: RunOpts, made: Plan, executor: NonNullable<RunOpts['executor']>, workers: number): Promise<void> {
  const { plan, kept } = savePlan(made);
  const planPath = planPaths.plan(plan.outputDir);
  const common = options(o);
  // SIGTERM and SIGHUP (a scheduler's or a closed terminal's stop) stop a planned run as Ctrl-C
  // does: the local executor forwards it to its workers and waits for them (no orphaned worker
  // keeps writing in the folder); under SLURM the jobs stay queued.
  const stop = new AbortController();
  common.signal?.addEventListener('abort', () => stop.abort(), { once: true });
  const onSignal = (sig: NodeJS.Signals) => {
    if (!o.quiet) process.stderr.write(`\nsemdedup: ${sig}: stopping the tasks; completed tasks are kept and a rerun resumes\n`);
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGHUP', onSignal);
  common.signal = stop.signal;
  const log = common.log;
  log?.(`plan ${plan.id}${kept ? ' (resumed)' : ''}: ${plan.stages.map((s) => `${s.name} ${s.tasks}`).join(', ')} tasks; ${planPath}`);
  const progress = progressLine(o.quiet);
  const t0 = performance.now();
  const r =
    executor === 'local'
      ? await runLocal(plan, planPath, { workers, progress, ...(common.signal ? { signal: common.signal } : {}) })
      : await runSlurm(plan, planPath, { sbatch: o.sbatch ? splitArgs(o.sbatch) : [], wait: o.wait !== false, progress, ...(common.signal ? { signal: common.signal } : {}) });
  const seconds = (performance.now() - t0) / 1000;
  if (!r.ok) {
    if (r.failed.length === 0) throw new SemDedupError('ERR_CANCELLED', `interrupted; completed tasks are kept and rerunning the same command resumes (\`semdedup status ${plan.outputDir}\`)`);
    throw new SemDedupError('ERR_TASK', failureMessage(plan, r, 'rerunning the same command'));
  }
  if (r.submitted && o.wait === false) {
    print(o, `submitted: ${r.submitted.length ? r.submitted.join(', ') : 'nothing (every task is complete)'}; \`semdedup status ${plan.outputDir}\` follows the plan`, { plan: plan.id, jobs: r.submitted });
    return;
  }
  const st = planStatus(plan);
  const summary = JSON.parse(readFileSafe(outputs.summary(plan.outputDir)) ?? '{}') as { eps?: { eps: number; kept: number; removed: number; keptFraction: number }[] };
  const eps = (summary.eps ?? []).map((e) => `  eps ${e.eps}: kept ${e.kept}, removed ${e.removed} (kept ${(100 * e.keptFraction).toFixed(2)}%)`).join('\n');
  print(o, `done in ${seconds.toFixed(2)} s (${executor}; ${r.ran} task${r.ran === 1 ? '' : 's'} run, ${st.tasks.length - r.ran} found complete)\n${eps}`,
    { plan: plan.id, executor, seconds, ran: r.ran, summary: summary.eps });
}

function readFileSafe(p: string): string | undefined {
  try {
    return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
  } catch {
    return undefined;
  }
}

/** The plan of a folder, a plan file, or the output folder of a config. */
function findPlan(where: string | undefined, o: Record<string, unknown>): { plan: Plan; path: string } {
  let path: string;
  if (where) {
    const p = resolve(where);
    path = existsSync(p) && statSync(p).isDirectory() ? planPaths.plan(p) : p;
  } else if (o.config) {
    const cfg = loadConfig(o, 'run');
    if (!cfg.outputDir) throw new ConfigError('the config names no output_dir', { key: 'output_dir' });
    path = planPaths.plan(cfg.outputDir);
  } else {
    path = planPaths.plan(process.cwd());
  }
  if (!existsSync(path))
    throw new SemDedupError('ERR_INPUT', `${path}: no planned run here (\`semdedup run --executor local|slurm\` writes it); give the output folder: semdedup status <output_dir>`, { file: path });
  return { plan: readPlan(path), path };
}

/** `semdedup task`: one task of a planned run. */
export async function taskAction(stage: string, index: string, o: { plan: string; threads?: string; log?: string; quiet?: boolean }): Promise<void> {
  if (!(STAGES as readonly string[]).includes(stage)) throw new ConfigError(`unknown stage '${stage}': the stages are ${STAGES.join(', ')}`, { key: 'stage' });
  const i = Number(index);
  if (!Number.isInteger(i) || i < 0) throw new ConfigError(`the task index must be a non-negative integer, got '${index}'`, { key: 'index' });
  const plan = readPlan(resolve(o.plan));
  refuseLinks(outputs.ours(plan.outputDir));
  const tag = `${stage} ${i}`;
  const log = o.quiet ? undefined : (l: string) => process.stderr.write(`semdedup[${tag}]: ${l}\n`);
  // Under SLURM without a thread count of its own, a task uses the CPUs the scheduler gave it.
  // Every source is checked and capped as `run` does it (config.threads was, by the config loader).
  const given = parseThreads(o.threads, '--threads', log);
  const slurmCpus = process.env.SLURM_CPUS_PER_TASK ? parseThreads(process.env.SLURM_CPUS_PER_TASK, 'SLURM_CPUS_PER_TASK', log) : undefined;
  const threads = given ?? (!plan.config.threads && slurmCpus ? slurmCpus : capThreads(plan.config.threads, log));
  const job = process.env.SLURM_ARRAY_JOB_ID ? `${process.env.SLURM_ARRAY_JOB_ID}_${process.env.SLURM_ARRAY_TASK_ID}` : process.env.SLURM_JOB_ID;
  log?.(`start (plan ${plan.id}, pid ${process.pid}${job ? `, job ${job}` : ''})`);
  const r = await runTask(plan, stage as Stage, i, { ...(log ? { log } : {}), ...(threads !== undefined ? { threads } : {}), ...(o.log ? { logFile: resolve(o.log) } : {}) });
  log?.(r.skipped ? 'already complete' : `done in ${r.state.seconds?.toFixed(2)} s`);
}

/** `semdedup status`. */
export async function statusAction(where: string | undefined, o: Record<string, unknown>): Promise<void> {
  const { plan } = findPlan(where, o);
  const s = planStatus(plan);
  print(o, formatStatus(s), s);
}
