// What the commands of the CLI share: the config options (files, --set, and the schema's options
// of each command, with the schema's help), the log and progress lines, Ctrl-C, the output.
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, InputError, SemDedupError } from './errors.js';
import { prepareInputs } from './inputs.js';
import { configSchema, loadConfigFiles, type CliCommand, type ConfigKeySpec, type PartialResolved } from './config.js';
import type { CommonOptions, Progress } from './steps/common.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { outputs } from './layout.js';
import { readManifest } from './manifest.js';
import { progressDisplay, type ProgressDisplay } from './progress.js';

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
  return (configSchema as readonly ConfigKeySpec[]).filter((s) => (s.field !== null || s.sets !== undefined) && s.cli?.includes(command));
}

/** Where commander stores a schema option: its field, or for a key that sets another (threshold) the key in camelCase. */
function optionField(spec: ConfigKeySpec): string {
  return spec.field ?? spec.key.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}


/** A word as a POSIX shell reads it back unchanged (for the commands the CLI suggests). */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./=:,+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The display of progress and log lines shared by the commands of one process (the bar is one). */
let display: ProgressDisplay | undefined;
function displayOf(quiet: boolean | undefined, overall = false): ProgressDisplay {
  if (quiet) return progressDisplay({ quiet: true });
  display ??= progressDisplay({ overall });
  return display;
}

/** Ends the progress bar under way, if any (before the result is printed). */
export function stopProgress(): void {
  display?.stop();
}

/** Log lines on stderr (`semdedup: ...`), above the progress bar; none with --quiet. */
export function logger(quiet: boolean | undefined): ((l: string) => void) | undefined {
  if (quiet) return undefined;
  const d = displayOf(false);
  return (l) => d.log(`semdedup: ${l}`);
}

/** The progress reader of a command (a bar on a terminal, quiet lines elsewhere); none with --quiet. */
export function progressPrinter(quiet: boolean | undefined, overall = false): ((p: Progress) => void) | undefined {
  if (quiet) return undefined;
  return displayOf(false, overall).onProgress;
}

// Ctrl-C: one handler per process. The first SIGINT aborts the command's signal (the step stops
// promptly; completed parts are kept) and the process then exits 130; a second one exits at once.
const interrupt = new AbortController();
let interrupted = false;
let sigintInstalled = false;
/** The signal every command's work runs under: aborted by Ctrl-C (SIGINT). */
export function interruptSignal(quiet?: boolean): AbortSignal {
  if (!sigintInstalled) {
    sigintInstalled = true;
    process.on('SIGINT', () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      stopProgress();
      if (!quiet) process.stderr.write('\nsemdedup: interrupted; completed parts are kept and a rerun resumes (Ctrl-C again to quit at once)\n');
      interrupt.abort();
    });
  }
  return interrupt.signal;
}

export function options(g: GlobalOpts): CommonOptions {
  const log = logger(g.quiet);
  const prog = progressPrinter(g.quiet);
  return { ...(log ? { log } : {}), ...(prog ? { onProgress: prog } : {}), signal: interruptSignal(g.quiet) };
}

/**
 * loadConfig, then the inputs made ready for the engine: Parquet embeddings, ids and ranking
 * column converted once into the output folder (prepareInputs), the config naming the result.
 */
export async function loadRunConfig(g: GlobalOpts, command: CliCommand): Promise<PartialResolved> {
  const cfg = loadConfig(g, command);
  // A whole run's bar shows its overall share too.
  const prog = progressPrinter(g.quiet, command === 'run');
  const log = logger(g.quiet);
  // The commands that read a finished run never convert (they hold no lock): they refuse converted
  // files that are not current.
  const convert = ['cluster', 'sort', 'dedup', 'run'].includes(command);
  return prepareInputs(cfg, { ...(log ? { log } : {}), ...(prog ? { onProgress: prog } : {}), ...(cfg.threads ? { threads: cfg.threads } : {}), convert });
}

/**
 * Short forms and other names of the schema's options (the schema says which commands take each
 * key; these are only how it is typed): `-k` and the original's `--ncentroids` for `k`, `-o` for
 * `output_dir`, `--order` for `kept_order`.
 */
const SHORT: Readonly<Record<string, string>> = { k: '-k', output_dir: '-o' };
const OTHER_NAMES: readonly { key: string; flags: string; help: string; commands: readonly CliCommand[]; hidden?: boolean }[] = [
  { key: 'k', flags: '--ncentroids <n>', help: 'the same as -k (the original\'s name)', commands: ['cluster', 'run'], hidden: true },
  { key: 'kept_order', flags: '--order <order>', help: 'order of the ids in the kept lists: cluster (default, the original\'s) or input (config key `kept_order`)', commands: ['extract', 'run'] },
];

/** The attribute commander stores a flag under. */
function attr(flags: string): string {
  return new Option(flags).attributeName();
}

/** The commands that read a finished run: their positional argument is its output folder. */
const AFTER_COMMANDS: readonly CliCommand[] = ['extract', 'curve', 'explain', 'decontaminate', 'report', 'exact-duplicates'];

/**
 * The positional input of a step (`semdedup run emb.npy ...`): one or more paths (files, a glob,
 * a folder of shards, a Parquet file). A folder written by `semdedup embed` (it holds
 * embeddings.yaml) and a .yaml file are configs; the rest are the embeddings.
 */
function positionalInput(inputs: readonly string[]): { files: string[]; embeddings?: string | string[] } {
  const files: string[] = [];
  const emb: string[] = [];
  for (const p of inputs) {
    if (/\.ya?ml$/i.test(p)) files.push(p);
    else if (existsSync(join(p, 'embeddings.yaml')) && statSync(p).isDirectory()) files.push(join(p, 'embeddings.yaml'));
    else emb.push(p);
  }
  return { files, ...(emb.length ? { embeddings: emb.length === 1 ? emb[0]! : emb } : {}) };
}

/** The config files, then `--set key=value`, then the command's options (validated by the schema). */
export function loadConfig(g: GlobalOpts, command: CliCommand): PartialResolved {
  const overrides: Record<string, unknown> = {};
  const overrideLabels: Record<string, string> = {};
  const files = [...(g.config ?? [])];
  // An after-the-run command given its output folder and no config: the folder's recorded config
  // (what its last command ran with) is the base.
  const folder = typeof g.outputDirArg === 'string' ? g.outputDirArg : undefined;
  if (folder !== undefined && !existsSync(folder))
    throw new InputError(`${folder}: no such output folder; give the folder of a finished run (\`semdedup run emb.npy -k K -o ${shellWord(folder)}\` writes one)`, { file: folder });
  if (folder !== undefined && AFTER_COMMANDS.includes(command)) {
    const rec = files.length === 0 && existsSync(outputs.manifest(folder)) ? readManifest(folder).config : undefined;
    for (const [k, v] of Object.entries(rec ?? {})) {
      overrides[k] = v;
      overrideLabels[k] = outputs.manifest(folder);
    }
  }
  for (const kv of g.set ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new ConfigError(`--set expects key=value, got '${kv}'`);
    overrides[kv.slice(0, i)] = kv.slice(i + 1);
    delete overrideLabels[kv.slice(0, i)];
  }
  const put = (key: string, v: unknown, label: string) => {
    overrides[key] = v;
    overrideLabels[key] = label;
  };
  if (Array.isArray(g.inputs) && g.inputs.length) {
    const pos = positionalInput(g.inputs as string[]);
    files.push(...pos.files);
    if (pos.embeddings !== undefined) put('embeddings', pos.embeddings, 'the input argument');
  }
  if (folder !== undefined) put('output_dir', folder, 'the output folder argument');
  for (const f of OTHER_NAMES) {
    if (!f.commands.includes(command)) continue;
    const v = g[attr(f.flags)];
    if (v !== undefined) put(f.key, v, new Option(f.flags).long!);
  }
  for (const spec of schemaOptions(command)) {
    const v = g[optionField(spec)];
    if (v === undefined) continue;
    put(spec.key, v, SHORT[spec.key] ?? `--${spec.key.replace(/_/g, '-')}`);
  }
  if (g.threshold !== undefined && g.epsList !== undefined)
    throw new ConfigError('give either --threshold (similarities) or --eps-list (1 − similarity), not both', { key: 'eps_list' });
  const cfg = loadConfigFiles(files, overrides, { overrideLabels });
  return cfg;
}

/** Prints the result on stdout (or stderr when stdout carries an output, `-o -`): text, or JSON with --json. */
export function print(g: GlobalOpts, human: string, data: unknown, opts: { stdoutTaken?: boolean } = {}): void {
  stopProgress();
  const out = opts.stdoutTaken ? process.stderr : process.stdout;
  if (g.json) out.write(JSON.stringify(data, (_k, v) => (typeof v === 'bigint' ? Number(v) : ArrayBuffer.isView(v) ? undefined : v), 2) + '\n');
  else out.write(human + '\n');
}

/** The options every pipeline command takes, and the schema's options of `command`. */
export function withCommon(cmd: Command, command: CliCommand): Command {
  if (AFTER_COMMANDS.includes(command)) cmd.argument('[output_dir]', 'the output folder of the run (its recorded config is used when no --config is given)');
  else cmd.argument('[input...]', 'the embeddings: a .npy or raw float32 file, a Parquet file, shards (several files, a glob, a folder), or a folder written by `semdedup embed`');
  cmd
    .option('-c, --config <file>', 'config file (YAML; ours or the original\'s); repeat to merge several', collect)
    .option('--set <key=value>', 'override a config key (any name of the schema); repeatable', collect);
  for (const spec of schemaOptions(command)) {
    const flag = `${SHORT[spec.key] ? `${SHORT[spec.key]}, ` : ''}--${spec.key.replace(/_/g, '-')}`;
    const help = `${spec.description} (config key \`${spec.key}\`; default ${spec.defaultText})`;
    const opt = spec.kind === 'bool' ? new Option(flag, help) : new Option(`${flag} <${spec.kind === 'enum' ? 'value' : spec.kind}>`, help);
    if (spec.kind === 'enum' && spec.values) opt.choices([...spec.values]);
    cmd.addOption(opt);
  }
  for (const f of OTHER_NAMES) {
    if (!f.commands.includes(command)) continue;
    const opt = new Option(f.flags, f.help);
    if (f.key === 'kept_order') opt.choices(['cluster', 'input']);
    cmd.addOption(f.hidden ? opt.hideHelp() : opt);
  }
  // The positional argument lands in the options, where loadConfig reads it.
  cmd.hook('preAction', (_this, action) => {
    const a = action.processedArgs[0] as string | string[] | undefined;
    if (AFTER_COMMANDS.includes(command)) action.setOptionValue('outputDirArg', a);
    else action.setOptionValue('inputs', a ?? []);
  });
  return cmd.option('-q, --quiet', 'no progress or log lines').option('--json', 'print the result as JSON (on failure: {"error": {code, message, file, key}})');
}

/** How to give a required key on the command line, for the message that says it is missing. */
const MISSING_HINTS: Record<string, string> = {
  embeddings: 'the input as the argument (`semdedup run emb.npy ...`), or --embeddings PATH',
  output_dir: '-o DIR for the steps; the output folder as the argument of the commands after the run (`semdedup curve out/`)',
  k: '-k K (the number of k-means clusters)',
};

/** Whether an error is a write to a closed pipe (`semdedup info | head -1`). */
function isEpipe(e: unknown): boolean {
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++)
    if ((c as NodeJS.ErrnoException).code === 'EPIPE') return true;
  return false;
}

/** A reader closed the standard output: stop quietly (as a program killed by SIGPIPE would, but without a trace). */
function onStdoutError(e: NodeJS.ErrnoException): void {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
}

/** Sets the short usage errors of every command: the error, then where the options are. */
function shortUsageErrors(program: Command): void {
  const visit = (cmd: Command, path: string): void => {
    cmd.exitOverride();
    const set = cmd.options.some((o) => o.long === '--set') ? '; any config key: --set key=value' : '';
    cmd.showHelpAfterError(`(options: \`${path} --help\`${set})`);
    for (const sub of cmd.commands) visit(sub, `${path} ${sub.name()}`);
  };
  visit(program, program.name());
}

/** The JSON form of an error: {"error": {code, message, file?, key?}}. */
export function errorJson(code: string, message: string, extra: { file?: string; key?: string; exitCode: number }): string {
  return JSON.stringify({ error: { code, message, ...(extra.file !== undefined ? { file: extra.file } : {}), ...(extra.key !== undefined ? { key: extra.key } : {}), exitCode: extra.exitCode } }) + '\n';
}

/**
 * Runs a program and returns the exit code: 0; 2 for a usage or config error; 1 for another
 * typed error (its message, no stack); 130 after Ctrl-C; 70 for an internal error (with the
 * stack). The message goes to stderr; with --json, the failure is also printed on stdout as
 * {"error": {code, message, file?, key?, exitCode}}. A closed standard
 * output (EPIPE) ends the program quietly with 0.
 */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  process.stdout.on('error', onStdoutError);
  const dashdash = argv.indexOf('--');
  const json = (dashdash < 0 ? argv : argv.slice(0, dashdash)).includes('--json');
  shortUsageErrors(program);
  const fail = (code: string, message: string, exitCode: number, extra: { file?: string; key?: string } = {}): number => {
    if (json) process.stdout.write(errorJson(code, message, { ...extra, exitCode }));
    return exitCode;
  };
  try {
    await program.parseAsync(argv);
    stopProgress();
    return 0;
  } catch (e) {
    stopProgress();
    if (e instanceof CommanderError) {
      // --help and --version end here too, with 0.
      if (e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      return fail('ERR_USAGE', e.message.replace(/^error: /, ''), 2);
    }
    if (isEpipe(e)) return 0;
    if (interrupted) {
      process.stderr.write('semdedup: interrupted\n');
      return fail('ERR_CANCELLED', 'interrupted (SIGINT)', 130);
    }
    if (e instanceof SemDedupError) {
      const exitCode = e.code === 'ERR_CONFIG' ? 2 : 1;
      const hint = e.code === 'ERR_CONFIG' && e.key && / needs `/.test(e.message) ? MISSING_HINTS[e.key] : undefined;
      process.stderr.write(`semdedup: error: ${e.message}${hint ? `\n  on the command line: ${hint}` : ''}\n`);
      return fail(e.code, e.message, exitCode, { ...(e.file !== undefined ? { file: e.file } : {}), ...(e.key !== undefined ? { key: e.key } : {}) });
    }
    process.stderr.write(`semdedup: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return fail('ERR_INTERNAL', String((e as Error)?.message ?? e), 70);
  }
}
