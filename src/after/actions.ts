// The actions of the commands that work from a finished run (declared in ./cli.ts, which imports
// this module when one of them runs): curve, explain, decontaminate, report, exact-duplicates, and
// extract by eps or by a target fraction.
import { loadRunConfig, options, print, type GlobalOpts } from '../cli-common.js';
import { ConfigError } from '../errors.js';
import { requireKeys, type CliCommand, type PartialResolved } from '../config.js';
import { dedupWanted, embeddingsSpecOf, resolveIds } from '../pipeline.js';
import { withLock } from '../lock.js';
import { outputs } from '../layout.js';
import { readIds } from '../io/ids.js';
import type { CommonOptions } from '../steps/common.js';
import { keptFractionCurve, extractAt } from './fraction.js';
import { explainId, explainRemovals } from './explain.js';
import { decontaminate } from './decontaminate.js';
import { writeReport } from './report.js';
import { exactDuplicatesOfRun } from './exact.js';
import { readRun } from './common.js';
import { capThreads, refuseOverwrite } from '../validate.js';
import { resolveInputFiles } from '../io/inputs.js';
import { outputTarget, STDOUT_NAME } from '../io/atomic.js';

/**
 * Checks a user-named output before any work: `-` (the standard output) is fine; a link, a folder
 * or a block device is refused; a file that is one of the run's inputs or committed files too.
 */
function checkOutput(target: string, flag: string, ctx: { outputDir: string; inputs: (string | undefined)[] }): void {
  if (target === STDOUT_NAME) return;
  refuseOverwrite(target, flag, ctx);
  outputTarget(target, flag);
}

/** How an output is named in a message. */
function shown(target: string | undefined): string {
  return target === STDOUT_NAME ? 'the standard output' : String(target);
}

type Opts = GlobalOpts;

function common(o: Opts, cfg: PartialResolved): CommonOptions & { normalize: 'auto' | 'always' | 'never' } {
  const opts = options(o);
  return { ...opts, threads: capThreads(cfg.threads, opts.log), normalize: cfg.normalize };
}

/** A count option (--sample, --recall-sample): a non-negative integer. */
function count(s: string | undefined, name: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^\s*\d+\s*$/.test(s) || !Number.isSafeInteger(Number(s)))
    throw new ConfigError(`${name}: expected a non-negative integer (a count of rows), got '${s}'`, { key: name.replace(/^--/, '') });
  return Number(s);
}

/**
 * The files a run reads, which no output option may name: every embeddings shard and ids file
 * (a list, glob or folder resolved to its files), the centroids and config files. (Parquet sources
 * are the import step's inputs in the manifest, which refuseOverwrite protects too.)
 */
function runInputs(cfg: PartialResolved): (string | undefined)[] {
  return [...filesOf(cfg.embeddings, 'embeddings'), ...filesOf(cfg.ids, 'ids'), cfg.centroids, ...(cfg.files ?? [])];
}

/** The files of an input given as one file, a list, a glob or a folder (the names as given when they cannot be resolved). */
function filesOf(src: string | readonly string[] | undefined, what: string): string[] {
  if (src === undefined) return [];
  try {
    return resolveInputFiles(src, what, what);
  } catch {
    return typeof src === 'string' ? [src] : [...src];
  }
}

function num(s: string | undefined, name: string): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v)) throw new ConfigError(`${name}: expected a number, got '${s}'`, { key: name.replace(/^--/, '') });
  return v;
}

/** The run's folder, its embeddings when the config names them, and its ids. */
async function runContext(o: Opts, command: CliCommand) {
  const what = `semdedup ${command}`;
  const cfg = await loadRunConfig(o, command);
  const c = requireKeys(cfg, ['output_dir'], what);
  const opts = common(o, cfg);
  const embeddings = cfg.embeddings ? embeddingsSpecOf(cfg) : undefined;
  const ids = resolveIds(cfg, c.outputDir, opts.log, { verify: true });
  return { cfg, outputDir: c.outputDir, opts: { ...opts, want: dedupWanted(cfg) }, embeddings, ids };
}

type ExtractOpts = Opts & { eps?: string; keepFraction?: string; removeFraction?: string; output?: string; removed?: boolean; format?: 'text' | 'parquet' };

/** `semdedup extract`: by eps (any eps: one not recorded by dedup is re-checked) or by a target fraction. */
export async function extractAction(_outputDir: string | undefined, o: ExtractOpts): Promise<void> {
  const given = [o.eps, o.keepFraction, o.removeFraction].filter((x) => x !== undefined).length;
  if (given !== 1) throw new ConfigError('extract: give exactly one of --eps, --keep-fraction, --remove-fraction', { key: 'eps' });
  const { cfg, outputDir, opts, embeddings, ids } = await runContext(o, 'extract');
  const eps = num(o.eps, '--eps');
  const keepFraction = num(o.keepFraction, '--keep-fraction');
  const removeFraction = num(o.removeFraction, '--remove-fraction');
  // Without -o the ids go to a file of the output folder, named by the eps (the run's own
  // kept_eps{eps}.txt are the manifest's, never overwritten by extract).
  const defaultOutput = (e: number) => `${outputDir}/extracted_${o.removed ? 'removed' : 'kept'}_eps${e}.txt`;
  const named = o.output ?? (o.format !== 'parquet' && eps !== undefined ? defaultOutput(eps) : undefined);
  if (named) checkOutput(named, '-o', { outputDir, inputs: runInputs(cfg) });
  const at = (e: { eps?: number; keepFraction?: number; removeFraction?: number }, output: string | undefined) => extractAt({
    ...opts,
    outputDir,
    ...(embeddings ? { embeddings } : {}),
    ...e,
    ...(output ? { output } : {}),
    ...(o.removed ? { removed: true } : {}),
    ...(ids ? { ids } : {}),
    ...(o.format ? { format: o.format } : {}),
    order: cfg.keptOrder,
    fileFormat: cfg.keptFileFormat === 'original' ? 'original' : 'posix',
  });
  const choose = { ...(eps !== undefined ? { eps } : {}), ...(keepFraction !== undefined ? { keepFraction } : {}), ...(removeFraction !== undefined ? { removeFraction } : {}) };
  const r = await withLock(outputDir, async () => {
    const first = await at(choose, named);
    if (named || o.format === 'parquet') return first;
    // An eps chosen for a fraction names the default file: write it at that eps.
    const file = defaultOutput(first.eps);
    checkOutput(file, '-o', { outputDir, inputs: runInputs(cfg) });
    const second = await at({ eps: first.eps }, file);
    return { ...second, ...(first.choice ? { choice: first.choice } : {}), rechecked: first.rechecked };
  });
  const n = r.summary.kept + r.summary.removed;
  const head = r.choice ? `eps ${r.eps} (chosen for kept fraction ${r.choice.keepFraction}: target ${r.choice.target.toFixed(1)} of ${n})` : `eps ${r.eps}`;
  print(
    o,
    `${head}: kept ${r.summary.kept}, removed ${r.summary.removed} (kept ${(100 * r.summary.keptFraction).toFixed(3)}%)${r.rechecked ? `, ${r.rechecked} re-checked in float64` : ''}` +
      `${r.output ? `\n${o.format === 'parquet' ? 'decisions' : o.removed ? 'removed ids' : 'kept ids'}: ${shown(r.output)}` : ''}`,
    { eps: r.eps, summary: r.summary, output: r.output, rechecked: r.rechecked, ...(r.choice ? { choice: r.choice } : {}) },
    { stdoutTaken: r.output === STDOUT_NAME },
  );
}

/** `semdedup curve`. */
export async function curveAction(_outputDir: string | undefined, o: Opts & { from: string; to: string; step: string }): Promise<void> {
  const cfg = await loadRunConfig(o, 'curve');
  const c = requireKeys(cfg, ['output_dir'], 'semdedup curve');
  const r = await keptFractionCurve({ outputDir: c.outputDir, from: num(o.from, '--from')!, to: num(o.to, '--to')!, step: num(o.step, '--step')! });
  print(o, ['eps\tkept\tkept_fraction', ...r.points.map((p) => `${p.eps}\t${p.kept}\t${p.keptFraction.toFixed(6)}`)].join('\n'), r);
}

/** `semdedup explain`. */
export async function explainAction(_outputDir: string | undefined, o: Opts & { eps: string; id?: string; near?: string; output?: string; format?: 'csv' | 'jsonl' }): Promise<void> {
  const { cfg, outputDir, opts, embeddings, ids } = await runContext(o, 'explain');
  const eps = num(o.eps, '--eps')!;
  const base = { ...opts, outputDir, eps, ...(embeddings ? { embeddings } : {}), ...(ids ? { ids } : {}) };
  const id = o.id;
  if (id !== undefined) {
    const r = await withLock(outputDir, () => explainId({ ...base, id }));
    print(
      o,
      `${r.id} (row ${r.row}, cluster ${r.cluster}, position ${r.position}): ${r.removed ? 'removed' : 'kept'} at eps ${eps}; ` +
        `nearest earlier member: ${r.nearestEarlier}; threshold ${r.threshold}`,
      r,
    );
    return;
  }
  const near = num(o.near, '--near');
  const output = o.output ?? outputs.explain(outputDir, eps, near !== undefined, o.format === 'jsonl' ? 'jsonl' : 'csv');
  checkOutput(output, '-o', { outputDir, inputs: runInputs(cfg) });
  const r = await withLock(outputDir, () => explainRemovals({ ...base, output, ...(o.format ? { format: o.format } : {}), ...(near !== undefined ? { near } : {}) }));
  print(o, `eps ${eps}: ${r.removed} removed, ${r.kept} kept; ${r.lines} lines\nexplanations: ${shown(r.output)}`, r, { stdoutTaken: r.output === STDOUT_NAME });
}

/** `semdedup decontaminate`. */
export async function decontaminateAction(_outputDir: string | undefined, o: Opts & { reference: string; eps: string; withinClusters?: boolean; referenceIds?: string; output?: string; matches?: string; recallSample: string }): Promise<void> {
  const cfg = await loadRunConfig(o, 'decontaminate');
  const c = requireKeys(cfg, ['embeddings', 'output_dir'], 'semdedup decontaminate');
  const opts = common(o, cfg);
  const ids = resolveIds(cfg, c.outputDir, opts.log, { verify: true });
  const eps = num(o.eps, '--eps')!;
  const recallSample = count(o.recallSample, '--recall-sample')!;
  const output = o.output ?? outputs.decontaminated(c.outputDir, eps);
  const matches = o.matches ?? outputs.decontaminatedMatches(c.outputDir, eps);
  const inputs = [...runInputs(cfg), ...filesOf(o.reference, 'reference'), o.referenceIds];
  checkOutput(output, '-o', { outputDir: c.outputDir, inputs });
  checkOutput(matches, '--matches', { outputDir: c.outputDir, inputs: [...inputs, output] });
  if (output === STDOUT_NAME && matches === STDOUT_NAME) throw new ConfigError('-o and --matches cannot both be the standard output', { key: 'matches' });
  const r = await withLock(c.outputDir, () => decontaminate({
    ...opts,
    embeddings: embeddingsSpecOf(cfg),
    reference: { path: o.reference, format: 'auto', ...(cfg.dim ? { dim: cfg.dim } : {}) },
    eps,
    mode: o.withinClusters ? 'within-clusters' : 'exact',
    outputDir: c.outputDir,
    ...(ids ? { ids } : {}),
    ...(o.referenceIds ? { referenceIds: readIds(o.referenceIds, { format: 'auto' }) } : {}),
    output,
    matches,
    recallSample,
  }));
  const rec = r.recall ? `; recall against the exact mode ${r.recall.exactRemoved ? (100 * r.recall.recall).toFixed(2) + '%' : 'n/a'} (${r.recall.found}/${r.recall.exactRemoved} on ${r.recall.sampleRows} sampled rows)` : '';
  print(o, `decontaminate (${r.mode}, eps ${eps}): removed ${r.removed} of ${r.rows} rows against ${r.referenceRows} reference rows, ${r.rechecked} re-checked in float64${rec} (${r.seconds.toFixed(2)} s)\nkept ids: ${shown(output)}\nmatches: ${shown(matches)}`, {
    eps, mode: r.mode, rows: r.rows, referenceRows: r.referenceRows, kept: r.kept, removed: r.removed, rechecked: r.rechecked, recall: r.recall, seconds: r.seconds, output, matches,
  }, { stdoutTaken: output === STDOUT_NAME || matches === STDOUT_NAME });
}

/** `semdedup report`. */
export async function reportAction(_outputDir: string | undefined, o: Opts & { output?: string; eps?: string; sample: string; remoteThumbnails?: boolean }): Promise<void> {
  const { cfg, outputDir, opts, embeddings, ids } = await runContext(o, 'report');
  const eps = num(o.eps, '--eps');
  const sample = count(o.sample, '--sample')!;
  if (o.output) checkOutput(o.output, '-o', { outputDir, inputs: runInputs(cfg) });
  const r = await withLock(outputDir, () => writeReport({
    ...opts, outputDir, ...(embeddings ? { embeddings } : {}), ...(ids ? { ids } : {}), ...(eps !== undefined ? { eps } : {}),
    ...(o.output ? { output: o.output } : {}), sample, ...(o.remoteThumbnails ? { remoteThumbnails: true } : {}),
  }));
  print(o, `report (eps ${r.eps}): ${shown(r.output)} (${(r.bytes / 1024).toFixed(0)} KB)`, r, { stdoutTaken: r.output === STDOUT_NAME });
}

/** `semdedup exact-duplicates`. */
export async function exactDuplicatesAction(_outputDir: string | undefined, o: Opts): Promise<void> {
  const cfg = await loadRunConfig(o, 'exact-duplicates');
  const c = requireKeys(cfg, ['embeddings', 'output_dir'], 'semdedup exact-duplicates');
  const opts = common(o, cfg);
  const r = await withLock(c.outputDir, () => exactDuplicatesOfRun({ ...opts, embeddings: embeddingsSpecOf(cfg), outputDir: c.outputDir, want: dedupWanted(cfg) }));
  print(o, `exact duplicates: ${r.copies} of ${r.rows} rows are byte-identical copies of an earlier row (${r.groups} sets) -> ${r.output}`, {
    rows: r.rows, groups: r.groups, copies: r.copies, output: r.output,
  });
}
