#!/usr/bin/env node
// Extract's share of a whole run at 2M × 64, k = 1000, 3 eps: generates the data with the
// project's generator (once, under --out), runs `semdedup run` in a child process and prints each
// step's seconds from the run's manifest. Usage (after `npm run build:ts`):
//   node bench/extract-share.mjs [--out DIR (default bench/out)] [--n ROWS] [--repeat R] [--ids]
// SEMDEDUP_CLI=path/cli.js runs another build. --ids: with a text file of ids (`doc/00000000123.jsonl`, one per line) instead of row numbers.
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prepareData } from '../dist/tools/bench.js';

const root = resolve(fileURLToPath(import.meta.url), '..', '..');
const arg = (name, dflt) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : dflt; };
const outDir = resolve(arg('--out', 'bench/out'));
const n = Number(arg('--n', 2_000_000));
const repeat = Number(arg('--repeat', 1));
const w = { name: `x64-${n}`, n, dim: 64, k: 1000, niter: 20, eps: [0.01, 0.05, 0.1], synth: { clusters: 1000, seed: 13, dim: 64, sizeDistribution: 'uniform' }, plantedCentroids: false };
const { emb } = prepareData(w, outDir, (l) => console.error(l));
const withIds = process.argv.includes('--ids');
const idsFile = join(outDir, w.name, 'ids.txt');
if (withIds && !existsSync(idsFile)) {
  const lines = [];
  for (let i = 0; i < n; i++) lines.push(`doc/${String(i).padStart(11, '0')}.jsonl`);
  writeFileSync(idsFile, lines.join('\n') + '\n');
}
for (let r = 0; r < repeat; r++) {
  const out = join(outDir, `${w.name}-run${withIds ? '-ids' : ''}`);
  rmSync(out, { recursive: true, force: true });
  const res = spawnSync(process.execPath, [resolve(process.env.SEMDEDUP_CLI ?? join(root, 'dist/src/cli.js')), 'run', emb, '-k', String(w.k), '--niter', String(w.niter), '--dim', String(w.dim), '--eps-list', w.eps.join(','), '-o', out, ...(withIds ? ['--ids', idsFile] : []), '--json', '-q'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (res.status !== 0) { console.error(res.stdout); process.exit(res.status ?? 1); }
  const s = JSON.parse(res.stdout).seconds;
  const share = (100 * s.extract) / s.total;
  console.log(JSON.stringify({ n, dim: 64, ids: withIds ? 'text' : 'row numbers', k: w.k, eps: w.eps, seconds: s, extractShare: `${share.toFixed(2)}%` }));
}
