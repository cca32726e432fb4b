// The command line of planned runs: `semdedup run --executor local|slurm`, `semdedup task` (one
// task of a plan, what the executors run) and `semdedup status`. This module declares the options
// and commands only; their actions (./commands.ts, and through it the executors and tasks) are
// imported when one of them runs.
import { Option, type Command } from 'commander';
import { ConfigError } from '../errors.js';
import { STAGES } from './plan.js';
import type { RunOpts } from './commands.js';

type Commands = typeof import('./commands.js');
const commands = (): Promise<Commands> => import('./commands.js');

/** The executor options of `semdedup run` (planned runs). */
export function addExecutorOptions(run: Command): Command {
  return run
    .addOption(new Option('--executor <how>', 'process: one process (default); local: worker processes on this machine; slurm: job arrays').choices(['process', 'local', 'slurm']))
    .option('--tasks <n>', 'tasks of the assign, group and dedup stages (planned runs; default: the workers, or 8 under slurm)')
    .option('--workers <n>', 'worker processes at a time (--executor local; default: min(cores, 4))')
    .option('--sbatch <options>', 'sbatch options for every stage (--executor slurm), e.g. "--partition=gpu --gres=gpu:1"')
    .option('--no-wait', 'submit the jobs and return (--executor slurm); rerun the command or use `semdedup status` to follow');
}

/** Runs `semdedup run` as a planned run when --executor is local or slurm; false for one process. */
export async function runWithExecutor(o: RunOpts): Promise<boolean> {
  if (!o.executor || o.executor === 'process') {
    for (const flag of ['tasks', 'workers', 'sbatch'] as const)
      if (o[flag] !== undefined) throw new ConfigError(`--${flag} needs --executor local or slurm`, { key: flag });
    return false;
  }
  await (await commands()).runPlanned(o);
  return true;
}

export function registerPlanCommands(program: Command): void {

  program
    .command('task')
    .description('run one task of a planned run (what the local and SLURM executors start); a complete task does nothing')
    .argument('<stage>', `the stage: ${STAGES.join(', ')}`)
    .argument('<index>', 'the task index within the stage (SLURM: $SLURM_ARRAY_TASK_ID)')
    .requiredOption('--plan <file>', 'the plan (semdedup/plan.json in the output folder)')
    .option('--threads <n>', 'worker threads of this task (default: the config\'s threads)')
    .option('--log <file>', 'this task\'s log file (recorded for `semdedup status`)')
    .option('-q, --quiet', 'no log lines')
    .action(async (stage: string, index: string, o: Parameters<Commands['taskAction']>[2]) => (await commands()).taskAction(stage, index, o));

  program
    .command('status')
    .description('what the tasks of a planned run are doing: done, running, failed, pending')
    .argument('[output_dir]', 'the output folder of the run (or its semdedup/plan.json); default: the config\'s, else the current folder')
    .option('-c, --config <file>', 'the run\'s config file (for its output_dir)', (v: string, p: string[] = []) => [...p, v])
    .option('--json', 'print as JSON')
    .action(async (where: string | undefined, o: Record<string, unknown>) => (await commands()).statusAction(where, o));
}
