#!/usr/bin/env node
// The tools beside the library: the built-in example and the benchmark harness. Their own entry
// point (`semdedup-tools`), so that the library (src/) and its CLI hold none of it.
import { Command } from 'commander';
import { print, runProgram } from '../src/cli-common.js';
import type { Progress } from '../src/steps/common.js';
import { runExample } from './example.js';
import { runBench, runOursStages } from './bench.js';

function options(o: { quiet?: boolean }): { log?: (l: string) => void; onProgress?: (p: Progress) => void } {
  if (o.quiet) return {};
  return { log: (l: string) => process.stderr.write(`semdedup: ${l}\n`) };
}

export function buildToolsProgram(): Command {
  const program = new Command('semdedup-tools').description('the built-in example and the benchmark harness of semdedup').showHelpAfterError();

  program
    .command('example')
    .description('run the whole pipeline on a generated dataset with planted duplicates and score it')
    .option('--dir <dir>', 'folder for the data and results', 'examples-out')
    .option('-q, --quiet', 'no progress')
    .option('--json', 'print as JSON')
    .action(async (o: { dir: string; quiet?: boolean; json?: boolean }) => {
      const r = await runExample({ dir: o.dir, ...options(o) });
      const lines = [
        `example: ${r.n} rows × ${r.dim} dims, k = ${r.k}; ${r.plantedCopies} planted duplicates in ${r.plantedGroups} groups (exact copies and cosine 0.995–0.9995)`,
        ...r.perEps.map((e) => `  eps ${e.eps}: removed ${e.removed}; planted duplicates found ${e.removedPlanted}/${r.plantedCopies} (recall ${(100 * e.recall).toFixed(1)}%, precision ${(100 * e.precision).toFixed(1)}%); groups left with exactly one member: ${e.groupsWithOneSurvivor}/${r.plantedGroups}`),
        `  time ${r.run.seconds.total!.toFixed(2)} s; results in ${r.outputDir} (kept ids: kept_eps{eps}.txt)`,
      ];
      print(o, lines.join('\n'), { ...r, run: { seconds: r.run.seconds, summary: r.run.dedup.summary } });
    });

  program
    .command('bench')
    .description('benchmark: generated workloads (w1, skew), per-stage time, GFLOP/s, % of sgemm, RSS, peers')
    .option('--workload <names>', 'comma-separated workloads: w1, skew', 'w1')
    .option('--no-peers', 'skip the Python original pipeline and FAISS-alone peers')
    .option('--n <rows>', 'override the number of rows (quick runs)')
    .option('--k <clusters>', 'override the number of clusters')
    .option('--out <dir>', 'data and outputs folder (default ./bench-out)')
    .option('--results <file>', 'markdown results file to update (e.g. bench/RESULTS.md in the repository; default: none)')
    .option('--repeat <runs>', 'run our pipeline and the original this many times each and report the median of each stage', '1')
    .option('--kernels <names>', 'also run our pipeline under these OpenBLAS kernels (OPENBLAS_CORETYPE, e.g. Haswell,Sandybridge,Nehalem) with 1 and 2 threads and compare its outputs byte for byte')
    .action(async (o: { workload: string; peers: boolean; n?: string; k?: string; out?: string; results?: string; repeat: string; kernels?: string }) => {
      await runBench({
        workloads: o.workload.split(',').map((s) => s.trim()).filter(Boolean),
        peers: o.peers,
        ...(o.n ? { n: Number(o.n) } : {}),
        ...(o.k ? { k: Number(o.k) } : {}),
        ...(o.out ? { outDir: o.out } : {}),
        ...(o.results !== undefined ? { results: o.results } : {}),
        repeat: Math.max(1, Number(o.repeat) || 1),
        ...(o.kernels ? { kernels: o.kernels.split(',').map((s) => s.trim()).filter(Boolean) } : {}),
      });
    });

  program
    .command('bench-child', { hidden: true })
    .argument('<json>')
    .action(async (json: string) => {
      const r = await runOursStages(JSON.parse(json));
      process.stdout.write(JSON.stringify(r) + '\n');
    });

  return program;
}

runProgram(buildToolsProgram(), process.argv).then((code) => {
  process.exitCode = code;
});
