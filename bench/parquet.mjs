// Parquet input benchmark: a dataset of N × D float32 rows with string ids as Parquet (written by
// DuckDB, snappy), converted by `semdedup import` and run end to end. Reports the conversion's
// float payload rate (what reaches the engine, as a mapped .npy), the engine's first read of it
// (the check step), and the peak RSS of each process (GNU time), for several N: the peak RSS of
// the conversion does not grow with the file.
//
//   node bench/parquet.mjs [--rows 250000,1000000] [--dim 256] [--k 100] [--dir /tmp/semdedup-pq-bench] [--import-only] [--row-group 122880]
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const rowsList = arg('rows', '250000,1000000').split(',').map(Number);
const dim = Number(arg('dim', '256'));
const k = Number(arg('k', '100'));
const dir = resolve(arg('dir', '/tmp/semdedup-pq-bench'));
const importOnly = process.argv.includes('--import-only');
// Rows per row group of the generated files; DuckDB's writer puts a row group's list column in pages
// of up to ~100 MB, and the conversion's peak RSS follows the page size (bench/PARQUET.md).
const rowGroup = Number(arg('row-group', '122880'));
const cli = resolve('dist/src/cli.js');
mkdirSync(dir, { recursive: true });

async function generate(path, n) {
  const inst = await DuckDBInstance.create(':memory:', { threads: '2' });
  const con = await inst.connect();
  await con.run(`SELECT setseed(0.42)`);
  // unit rows: each value divided by its row's norm (computed once per row)
  await con.run(`COPY (
      SELECT id, list_transform(v, x -> (x / nrm)::FLOAT) AS embedding
      FROM (SELECT id, v, sqrt(list_sum(list_transform(v, y -> y * y))) AS nrm
            FROM (SELECT 'img_' || lpad(i::VARCHAR, 9, '0') || '.jpg' AS id, list_transform(range(${dim}), j -> random() - 0.5) AS v FROM range(${n}) t(i)))
      ORDER BY id
    ) TO '${path}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE ${rowGroup})`);
  con.closeSync();
  inst.closeSync();
}

function timed(args) {
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, cli, ...args], { cwd: dir, encoding: 'utf8' });
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr)?.[1] ?? NaN) / 1024;
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)/.exec(r.stderr)?.[1];
  const cpu = Number(/User time \(seconds\): ([\d.]+)/.exec(r.stderr)?.[1]) + Number(/System time \(seconds\): ([\d.]+)/.exec(r.stderr)?.[1]);
  if (r.status !== 0) throw new Error(`semdedup ${args.join(' ')} failed:\n${r.stderr}`);
  return { rssMiB: rss, wall, cpu, stderr: r.stderr, stdout: r.stdout };
}

const results = [];
for (const n of rowsList) {
  const pq = join(dir, rowGroup === 122880 ? `data-${n}.parquet` : `data-${n}-rg${rowGroup}.parquet`);
  if (!existsSync(pq)) {
    const t = performance.now();
    await generate(pq, n);
    console.error(`generated ${pq} (${(statSync(pq).size / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  const out = join(dir, `out-${n}`);
  rmSync(out, { recursive: true, force: true });
  const cfg = join(dir, `c-${n}.yaml`);
  writeFileSync(cfg, `embeddings: ${pq}\noutput_dir: ${out}\nk: ${k}\nniter: 5\nspherical: true\neps_list: [0.05]\n`);
  const load0 = (await import('node:os')).loadavg()[0];
  const imp = timed(['import', '-c', cfg]);
  const m = /import: (\d+) rows × (\d+) \((\w+)\) in ([\d.]+) s, (\d+) MB\/s/.exec(imp.stderr);
  const load1 = (await import('node:os')).loadavg()[0];
  const run = importOnly ? null : timed(['run', '-c', cfg, '--json']);
  const manifest = JSON.parse((await import('node:fs')).readFileSync(join(out, 'semdedup', 'manifest.json'), 'utf8'));
  results.push({
    rows: n, dim, rowGroup, fileMiB: statSync(pq).size / 2 ** 20, payloadMB: (n * dim * 4) / 1e6,
    importSeconds: Number(m?.[4]), importMBs: Number(m?.[5]), importPeakRssMiB: imp.rssMiB, importWall: imp.wall,
    importCpuSeconds: imp.cpu, loadAverageBefore: load0, loadAverageAfter: load1,
    ...(run ? { runWall: run.wall, runPeakRssMiB: run.rssMiB, checkStats: manifest.steps.check?.stats ?? null } : {}),
  });
  console.error(JSON.stringify(results.at(-1)));
}
console.log(JSON.stringify(results, null, 2));
