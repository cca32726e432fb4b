#!/usr/bin/env node
// The `semdedup` command line.
import { Command } from 'commander';
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatConfigDoc } from './config.js';
import { loadRunConfig, options, print, runProgram, shellWord, withCommon, type GlobalOpts } from './cli-common.js';
import { outputs } from './layout.js';
import { extractFractionOptions, lazy, registerAfterCommands } from './after/cli.js';
import { addExecutorOptions, registerPlanCommands, runWithExecutor } from './plan/cli.js';
import { registerEmbedCommand } from './embed/cli.js';

// Each command declares its options here and imports the modules that do its work when it runs
// (the pipeline's steps, the engine description; the other commands' modules likewise in
// after/cli.ts, plan/cli.ts and embed/cli.ts), so that a command's start pays only for its own.
const pipeline = () => import('./pipeline.js');

function fmtSummary(eps: { eps: number; kept: number; removed: number; keptFraction: number }[], files?: (string | undefined)[]): string {
  return eps.map((e, i) => `  eps ${e.eps}: kept ${e.kept}, removed ${e.removed} (kept ${(100 * e.keptFraction).toFixed(2)}%)${files?.[i] ? ` -> ${files[i]}` : ''}`).join('\n');
}

/** The files a command wrote, one per line. */
function wrote(files: Record<string, string>): string {
  return Object.entries(files).map(([what, f]) => `${what}: ${f}`).join('\n');
}

export function buildProgram(): Command {
  const program = new Command('semdedup')
    .description('SemDeDup semantic deduplication: k-means, rank, drop near-duplicates (cosine > 1 - eps) per cluster')
    .version(engineVersion())
    ;

  withCommon(program.command('cluster').description('step 2: k-means (FAISS\'s algorithm) and the nearest centroid of every row'), 'cluster')
    .action(async (_input: string[], o: GlobalOpts) => {
      const cfg = await loadRunConfig(o, 'cluster');
      const { runCluster } = await pipeline();
      const r = await runCluster(cfg, options(o));
      const ran = [r.backend.train ? `train on ${r.backend.train}` : '', r.backend.assign ? `assign on ${r.backend.assign}` : ''].filter(Boolean).join(', ');
      const files = { centroids: outputs.centroids(cfg.outputDir!), assignment: `${outputs.nearest(cfg.outputDir!)}, ${outputs.dist(cfg.outputDir!)}` };
      print(o, `clustered: k=${r.k}, centroids ${r.centroidsFrom}${r.assignmentReused ? ', assignment up to date' : ''} (train ${r.seconds.train.toFixed(2)} s, assign ${r.seconds.assign.toFixed(2)} s${ran ? `; ${ran}` : ''})\n${wrote(files)}`,
        { outputs: files, k: r.k, centroidsFrom: r.centroidsFrom, assignmentReused: r.assignmentReused, seconds: r.seconds, backend: r.backend, objective: r.objective });
    });

  withCommon(program.command('sort').description('step 3: rank every cluster by distance to its centroid'), 'sort')
    .action(async (_input: string[], o: GlobalOpts) => {
      const cfg = await loadRunConfig(o, 'sort');
      const { runSort } = await pipeline();
      const r = await runSort(cfg, options(o));
      const sizes = Array.from({ length: r.k }, (_, c) => Number(r.offsets[c + 1]! - r.offsets[c]!));
      const files: Record<string, string> = { 'cluster order': outputs.order(cfg.outputDir!), 'cluster offsets': outputs.offsets(cfg.outputDir!), ...(cfg.exportSortedClusters && cfg.sortedClustersDir ? { 'sorted clusters': `${cfg.sortedClustersDir}/cluster_{c}.npy` } : {}) };
      print(o, `sorted ${r.order.length} rows in ${r.k} clusters (largest ${Math.max(...sizes)}, empty ${sizes.filter((s) => s === 0).length}) in ${r.seconds.toFixed(2)} s\n${wrote(files)}`,
        { outputs: files, rows: r.order.length, clusters: r.k, largest: Math.max(...sizes), seconds: r.seconds });
    });

  withCommon(program.command('dedup').description('step 4: per-cluster max similarity M and the removal decisions for every eps'), 'dedup')
    .action(async (_input: string[], o: GlobalOpts) => {
      const cfg = await loadRunConfig(o, 'dedup');
      const { runDedup } = await pipeline();
      const r = await runDedup(cfg, options(o));
      const files = { M: outputs.M(cfg.outputDir!), 'keep order': outputs.keepOrder(cfg.outputDir!), summary: outputs.summary(cfg.outputDir!) };
      print(o, `dedup: ${r.keepOrder.length} members, M exact (${r.stats.rechecked} not decided by the float32 filter, ${r.stats.rescanned ?? 0} re-scanned), ${r.seconds.toFixed(2)} s (${r.stats.backend})${r.resumedParts ? `, ${r.resumedParts} parts resumed` : ''}\n${fmtSummary(r.summary)}\n${wrote(files)}\nnext: semdedup extract ${shellWord(cfg.outputDir!)} --eps ${r.summary[0]?.eps ?? 0.05}`,
        { outputs: files, summary: r.summary, stats: r.stats, seconds: r.seconds, resumedParts: r.resumedParts });
    });

  extractFractionOptions(withCommon(program.command('extract').description('step 5: write the kept (or removed) ids for one eps, or for the eps that keeps a target fraction'), 'extract')
    .option('--eps <eps>', 'the eps to extract (one not in eps_list is re-checked in float64 near its threshold)'))
    .option('-o, --output <file>', 'text file for the ids, one per line')
    .option('--removed', 'write the removed ids instead of the kept ones')
    .action(lazy('extractAction'));

  addExecutorOptions(withCommon(program.command('run').description('all steps: cluster, sort, dedup, extract (kept_eps{eps}.txt per eps)'), 'run'))
    .addHelpText('after', `
Examples:
  semdedup run emb.npy --ids ids.txt -k 400 -o out/          a .npy and one id per line
  semdedup run emb.f32 --dim 512 -k 400 -o out/ --threshold 0.95
  semdedup run 'shards/*.npy' --ids 'ids/*.txt' -k 1000 -o out/
  semdedup run -c clustering_configs.yaml -c semdedup_configs.yaml   the original's configs
Then: semdedup curve out/, semdedup extract out/ --eps 0.03, semdedup report out/`)
    .action(async (_input: string[], o: GlobalOpts) => {
      if (await runWithExecutor(o)) return;
      const cfg = await loadRunConfig(o, 'run');
      const { runAll } = await pipeline();
      const r = await runAll(cfg, options(o));
      const s = r.seconds;
      print(o, `done in ${s.total!.toFixed(2)} s (cluster ${s.cluster!.toFixed(2)}, sort ${s.sort!.toFixed(2)}, dedup ${s.dedup!.toFixed(2)}, extract ${s.extract!.toFixed(2)})\n` +
        `${fmtSummary(r.dedup.summary, r.extract.map((x) => x.output))}\nsummary: ${outputs.summary(cfg.outputDir!)}\nnext: semdedup curve ${shellWord(cfg.outputDir!)}; semdedup report ${shellWord(cfg.outputDir!)}`,
        { summary: r.dedup.summary, seconds: r.seconds, outputs: r.extract.map((x) => x.output) });
    });

  withCommon(program.command('import').description('convert the Parquet inputs (embeddings, ids, the rank_by column) once into the output folder (semdedup/import/); the other commands do it when needed'), 'run')
    .action(async (_input: string[], o: GlobalOpts) => {
      const cfg = await loadRunConfig(o, 'run');
      print(o, `embeddings: ${String(cfg.embeddings)}${cfg.ids ? `\nids: ${String(cfg.ids)}` : ''}`, { embeddings: cfg.embeddings, ids: cfg.ids ?? null });
    });

  registerEmbedCommand(program);
  registerAfterCommands(program);
  registerPlanCommands(program);

  program
    .command('info')
    .description('versions, CPU features, BLAS kernel in use, threads, GPU')
    .option('--json', 'print as JSON')
    .option('--sgemm', 'measure this machine\'s sgemm GFLOP/s')
    .action(async (o: { json?: boolean; sgemm?: boolean }) => {
      const { engineInfo } = await import('./info.js');
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

/** The version of the package (package.json is its only source). */
function engineVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function main(argv: string[]): Promise<number> {
  return runProgram(buildProgram(), argv);
}

// Runs when this file is the program (node cli.js, or the npm bin link to it); importing it (to
// build the program elsewhere) runs nothing.
function isEntry(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry())
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
