// What the commands of the CLI share: the config options (files, --set, and the schema's options
// of each command, with the schema's help), the log and progress lines, Ctrl-C, the output.
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, SemDedupError } from './errors.js';
import { prepareInputs } from './inputs.js';
import { configSchema, loadConfigFiles, type CliCommand, type ConfigKeySpec, type PartialResolved } from './config.js';
import type { CommonOptions, Progress } from './steps/common.js';

export interface GlobalOpts {
  config?: string[];
  set?: string[];
  quiet?: boolean;
  json?: boolean;
  /** Schema options, under their field names (commander's camelCase of the flag). */
  [field: string]: unknown;
}

/** The schema rows that are options of `command`. */
export function schemaOptions(command: CliCommand): ConfigKeySpec[] {
  return (configSchema as readonly ConfigKeySpec[]).filter((s) => s.field !== null && s.cli?.includes(command));
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}


export function progressPrinter(quiet: boolean | undefined): ((p: Progress) => void) | undefined {
  if (quiet) return undefined;
  const tty = process.stderr.isTTY;
  let lastStage = '';
  let lastPrint = 0;
  return (p) => {
    const t = Date.now();
    const pct = p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
    if (tty) {
      if (p.stage !== lastStage && lastStage) process.stderr.write('\n');
      process.stderr.write(`\r  ${p.stage} ${pct.toFixed(1).padStart(5)}%`);
      if (p.done >= p.total) process.stderr.write('\n');
    } else if (p.stage !== lastStage || t - lastPrint > 5000 || p.done >= p.total) {
      process.stderr.write(`  ${p.stage} ${pct.toFixed(1)}%\n`);
      lastPrint = t;
    }
    lastStage = p.done >= p.total ? '' : p.stage;
  };
}

export function options(g: GlobalOpts): CommonOptions {
  const log = g.quiet ? undefined : (l: string) => process.stderr.write(`semdedup: ${l}\n`);
  const prog = progressPrinter(g.quiet);
  const ac = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\nsemdedup: interrupted; completed parts are kept and a rerun resumes\n');
    ac.abort();
  });
  return { ...(log ? { log } : {}), ...(prog ? { onProgress: prog } : {}), signal: ac.signal };
}

/**
 * loadConfig, then the inputs made ready for the engine: Parquet embeddings, ids and ranking
 * column converted once into the output folder (prepareInputs), the config naming the result.
 */
export async function loadRunConfig(g: GlobalOpts, command: CliCommand): Promise<PartialResolved> {
  const cfg = loadConfig(g, command);
  const log = g.quiet ? undefined : (l: string) => process.stderr.write(`semdedup: ${l}\n`);
  const prog = progressPrinter(g.quiet);
  // The commands that read a finished run never convert (they hold no lock): they refuse converted
  // files that are not current.
  const convert = ['cluster', 'sort', 'dedup', 'run'].includes(command);
  return prepareInputs(cfg, { ...(log ? { log } : {}), ...(prog ? { onProgress: prog } : {}), ...(cfg.threads ? { threads: cfg.threads } : {}), convert });
}

/** The config files, then `--set key=value`, then the command's schema options (validated by the schema). */
export function loadConfig(g: GlobalOpts, command: CliCommand): PartialResolved {
  const overrides: Record<string, unknown> = {};
  for (const kv of g.set ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new ConfigError(`--set expects key=value, got '${kv}'`);
    overrides[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const overrideLabels: Record<string, string> = {};
  for (const spec of schemaOptions(command)) {
    const v = g[spec.field!];
    if (v === undefined) continue;
    overrides[spec.key] = v;
    overrideLabels[spec.key] = `--${spec.key.replace(/_/g, '-')}`;
  }
  return loadConfigFiles(g.config ?? [], overrides, { overrideLabels });
}

export function print(g: GlobalOpts, human: string, data: unknown): void {
  if (g.json) process.stdout.write(JSON.stringify(data, (_k, v) => (typeof v === 'bigint' ? Number(v) : ArrayBuffer.isView(v) ? undefined : v), 2) + '\n');
  else process.stdout.write(human + '\n');
}

/** The options every pipeline command takes, and the schema's options of `command`. */
export function withCommon(cmd: Command, command: CliCommand): Command {
  cmd
    .option('-c, --config <file>', 'config file (YAML; ours or the original\'s); repeat to merge several', collect)
    .option('--set <key=value>', 'override a config key (any name of the schema); repeatable', collect);
  for (const spec of schemaOptions(command)) {
    const flag = `--${spec.key.replace(/_/g, '-')}`;
    const help = `${spec.description} (config key \`${spec.key}\`; default ${spec.defaultText})`;
    const opt = spec.kind === 'bool' ? new Option(flag, help) : new Option(`${flag} <${spec.kind === 'enum' ? 'value' : spec.kind}>`, help);
    if (spec.kind === 'enum' && spec.values) opt.choices([...spec.values]);
    cmd.addOption(opt);
  }
  return cmd.option('-q, --quiet', 'no progress or log lines').option('--json', 'print the result as JSON');
}


/**
 * Runs a program and returns the exit code: 0, 2 for a config error, 1 for another typed error
 * (its message, no stack), 70 for an internal error (with the stack).
 */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    // A usage error where the program asked commander to throw (exitOverride): commander printed it.
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof SemDedupError) {
      process.stderr.write(`semdedup: error: ${e.message}\n`);
      return e.code === 'ERR_CONFIG' ? 2 : 1;
    }
    process.stderr.write(`semdedup: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}
