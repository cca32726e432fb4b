#!/usr/bin/env node
// The `semdedup` command line.
import { Command, Option } from 'commander';
import { ConfigError, SemDedupError } from './errors.js';
import { DEFAULT_EPS_LIST, formatConfigDoc, loadConfigFiles, type PartialResolved } from './config.js';
import { runAll, runCluster, runDedup, runExtract, runSort } from './pipeline.js';
import { engineInfo } from './info.js';
import type { CommonOptions, Progress } from './steps/common.js';

interface GlobalOpts {
  config?: string[];
  set?: string[];
  device?: string;
  threads?: string;
  normalize?: string;
  quiet?: boolean;
  json?: boolean;
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

function parseEpsList(s: string): number[] {
  const out = s.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (out.length === 0) throw new ConfigError(`--eps-list: give at least one eps (e.g. 0.01,0.05), got '${s}'`, { key: 'eps_list' });
  for (const e of out)
    if (!Number.isFinite(e) || e <= 0 || e >= 1) throw new ConfigError(`--eps-list: each eps must be a number strictly between 0 and 1, got '${s}'`, { key: 'eps_list' });
  return out;
}

function progressPrinter(quiet: boolean | undefined): ((p: Progress) => void) | undefined {
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

function options(g: GlobalOpts): CommonOptions {
  const log = g.quiet ? undefined : (l: string) => process.stderr.write(`semdedup: ${l}\n`);
  const prog = progressPrinter(g.quiet);
  const ac = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\nsemdedup: interrupted; completed parts are kept and a rerun resumes\n');
    ac.abort();
  });
  return { ...(log ? { log } : {}), ...(prog ? { onProgress: prog } : {}), signal: ac.signal };
}

function loadConfig(g: GlobalOpts, extra: Record<string, unknown> = {}): PartialResolved {
  const overrides: Record<string, unknown> = { ...extra };
  for (const kv of g.set ?? []) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new ConfigError(`--set expects key=value, got '${kv}'`);
    overrides[kv.slice(0, i)] = kv.slice(i + 1);
  }
  if (g.device) overrides.device = g.device;
  if (g.threads) overrides.threads = g.threads;
  if (g.normalize) overrides.normalize = g.normalize;
  return loadConfigFiles(g.config ?? [], overrides);
}

function print(g: GlobalOpts, human: string, data: unknown): void {
  if (g.json) process.stdout.write(JSON.stringify(data, (_k, v) => (typeof v === 'bigint' ? Number(v) : ArrayBuffer.isView(v) ? undefined : v), 2) + '\n');
  else process.stdout.write(human + '\n');
}

function withCommon(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'config file (YAML; ours or the original\'s); repeat to merge several', collect)
    .option('--set <key=value>', 'override a config key (any name of the schema); repeatable', collect)
    .addOption(new Option('--device <device>', 'backend for the heavy steps').choices(['auto', 'cpu', 'cuda']))
    .option('--threads <n>', 'worker threads (0 = all cores)')
    .addOption(new Option('--normalize <mode>', 'rows that are not unit-norm').choices(['auto', 'always', 'never']))
    .option('-q, --quiet', 'no progress or log lines')
    .option('--json', 'print the result as JSON');
}

function fmtSummary(eps: { eps: number; kept: number; removed: number; keptFraction: number }[]): string {
  return eps.map((e) => `  eps ${e.eps}: kept ${e.kept}, removed ${e.removed} (kept ${(100 * e.keptFraction).toFixed(2)}%)`).join('\n');
}

export function buildProgram(): Command {
  const program = new Command('semdedup')
    .description('SemDeDup semantic deduplication: k-means, rank, drop near-duplicates (cosine > 1 - eps) per cluster')
    .version(engineVersion())
    .showHelpAfterError();

  withCommon(program.command('cluster').description('step 2: k-means (FAISS) and the nearest centroid of every row'))
    .option('--centroids <file>', 'use these k × D centroids (.npy) instead of training')
    .action(async (o: GlobalOpts & { centroids?: string }) => {
      const cfg = loadConfig(o, o.centroids ? { centroids: o.centroids } : {});
      const r = await runCluster(cfg, options(o));
      print(o, `clustered: k=${r.k}, centroids ${r.centroidsFrom}${r.assignmentReused ? ', assignment up to date' : ''} (train ${r.seconds.train.toFixed(2)} s, assign ${r.seconds.assign.toFixed(2)} s, ${r.device})`,
        { k: r.k, centroidsFrom: r.centroidsFrom, assignmentReused: r.assignmentReused, seconds: r.seconds, device: r.device, objective: r.objective });
    });

  withCommon(program.command('sort').description('step 3: rank every cluster by distance to its centroid'))
    .option('--export-sorted-clusters', "also write sorted_clusters/cluster_{c}.npy in the original's format")
    .action(async (o: GlobalOpts & { exportSortedClusters?: boolean }) => {
      const cfg = loadConfig(o, o.exportSortedClusters ? { export_sorted_clusters: true } : {});
      const r = await runSort(cfg, options(o));
      const sizes = Array.from({ length: r.k }, (_, c) => Number(r.offsets[c + 1]! - r.offsets[c]!));
      print(o, `sorted ${r.order.length} rows in ${r.k} clusters (largest ${Math.max(...sizes)}, empty ${sizes.filter((s) => s === 0).length}) in ${r.seconds.toFixed(2)} s`,
        { rows: r.order.length, clusters: r.k, largest: Math.max(...sizes), seconds: r.seconds });
    });

  withCommon(program.command('dedup').description('step 4: per-cluster max similarity M and the removal decisions for every eps'))
    .option('--eps-list <list>', `comma-separated eps values (default from the config, else ${DEFAULT_EPS_LIST.join(',')})`)
    .action(async (o: GlobalOpts & { epsList?: string }) => {
      const cfg = loadConfig(o, o.epsList !== undefined ? { eps_list: parseEpsList(o.epsList) } : {});
      const r = await runDedup(cfg, options(o));
      print(o, `dedup: ${r.keepOrder.length} members, ${r.stats.rechecked} re-checked in float64, ${r.seconds.toFixed(2)} s (${r.stats.device})${r.resumedParts ? `, ${r.resumedParts} parts resumed` : ''}\n${fmtSummary(r.summary)}`,
        { summary: r.summary, stats: r.stats, seconds: r.seconds, resumedParts: r.resumedParts });
    });

  withCommon(program.command('extract').description('step 5: write the kept (or removed) ids for one eps'))
    .requiredOption('--eps <eps>', 'the eps to extract')
    .option('-o, --output <file>', 'text file for the ids, one per line')
    .option('--removed', 'write the removed ids instead of the kept ones')
    .action(async (o: GlobalOpts & { eps: string; output?: string; removed?: boolean }) => {
      const eps = parseEpsList(o.eps)[0]!;
      const cfg = loadConfig(o);
      const log = o.quiet ? undefined : (l: string) => process.stderr.write(`semdedup: ${l}\n`);
      const r = await runExtract(cfg, eps, o.output, { ...(o.removed ? { removed: true } : {}), ...(log ? { log } : {}) });
      print(o, `eps ${eps}: kept ${r.summary.kept}, removed ${r.summary.removed}${r.output ? ` -> ${r.output}` : ''}`, { summary: r.summary, output: r.output });
    });

  withCommon(program.command('run').description('all steps: cluster, sort, dedup, extract (kept_eps{eps}.txt per eps)'))
    .option('--eps-list <list>', 'comma-separated eps values')
    .option('--centroids <file>', 'use these centroids instead of training')
    .action(async (o: GlobalOpts & { epsList?: string; centroids?: string }) => {
      const cfg = loadConfig(o, { ...(o.epsList !== undefined ? { eps_list: parseEpsList(o.epsList) } : {}), ...(o.centroids ? { centroids: o.centroids } : {}) });
      const r = await runAll(cfg, options(o));
      const s = r.seconds;
      print(o, `done in ${s.total!.toFixed(2)} s (cluster ${s.cluster!.toFixed(2)}, sort ${s.sort!.toFixed(2)}, dedup ${s.dedup!.toFixed(2)}, extract ${s.extract!.toFixed(2)})\n${fmtSummary(r.dedup.summary)}`,
        { summary: r.dedup.summary, seconds: r.seconds, outputs: r.extract.map((x) => x.output) });
    });

  program
    .command('info')
    .description('versions, CPU features, BLAS kernel in use, threads, GPU')
    .option('--json', 'print as JSON')
    .option('--sgemm', 'measure this machine\'s sgemm GFLOP/s')
    .action(async (o: { json?: boolean; sgemm?: boolean }) => {
      const info = await engineInfo({ sgemm: !!o.sgemm });
      if (o.json) process.stdout.write(JSON.stringify(info, null, 2) + '\n');
      else for (const [k, v] of Object.entries(info)) process.stdout.write(`${k.padEnd(16)} ${typeof v === 'object' ? JSON.stringify(v) : v}\n`);
    });

  program
    .command('config-doc')
    .description('print the config schema (keys, the original\'s names, types, defaults)')
    .action(() => {
      process.stdout.write(formatConfigDoc() + '\n');
    });

  return program;
}

function engineVersion(): string {
  return '0.1.0';
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof SemDedupError) {
      process.stderr.write(`semdedup: error: ${e.message}\n`);
      return e.code === 'ERR_CONFIG' ? 2 : 1;
    }
    process.stderr.write(`semdedup: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

main(process.argv).then((code) => {
  process.exitCode = code;
});
