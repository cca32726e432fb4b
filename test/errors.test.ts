// Bad inputs: every one gives a clear error naming the file (and the key where there is one) and
// what is wrong, a non-zero exit code through the CLI, a typed SemDedupError with the right code
// through the API, and no half-written output that looks complete.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

import { loadConfigFiles } from '../src/config.js';
import { SemDedupError, type ErrorCode } from '../src/errors.js';
import { writeIdsMemmap } from '../src/io/ids.js';
import { npyHeaderBytes, readNpy } from '../src/io/npy.js';
import { runAll, runCluster, runDedup, runExtract, runSort } from '../src/pipeline.js';
import { assignAndSortClusters } from '../src/steps/sort.js';
import { semdedup } from '../src/steps/dedup.js';
import { SynthDataset } from '../tools/synth.js';
import { ROOT, runCli, tmpFolder, type CliResult, withSpec, listFiles } from './helpers.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'original');

const N = 2000;
const DIM = 16;
const K = 4;

function tmp(): string {
  return tmpFolder('errors');
}

function cli(args: string[], cwd: string): CliResult {
  return runCli(args, cwd, 60_000);
}

/** The CLI failed with a typed error (exit 1 or 2, not the internal-error code) whose message holds every `parts`. */
function expectCliError(r: CliResult, parts: (string | RegExp)[], what: string): void {
  assert.notEqual(r.code, 0, `${what}: expected a non-zero exit code\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.ok(r.code === 1 || r.code === 2, `${what}: expected exit 1 or 2 (a typed error), got ${r.code}\nstderr: ${r.stderr}`);
  assert.match(r.stderr, /semdedup: error: /, `${what}: no 'semdedup: error:' line\nstderr: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error|    at /, `${what}: an internal error / stack trace leaked\nstderr: ${r.stderr}`);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(r.stderr.includes(p), `${what}: the message should mention ${JSON.stringify(p)}\nstderr: ${r.stderr}`);
    else assert.match(r.stderr, p, `${what}: the message should match ${p}\nstderr: ${r.stderr}`);
  }
}

/** The promise rejects with a SemDedupError of `code` whose message holds every `parts`. */
async function expectApiError(
  p: Promise<unknown> | (() => unknown),
  code: ErrorCode,
  parts: (string | RegExp)[],
  extra: { file?: string; key?: string } = {},
): Promise<SemDedupError> {
  let err: unknown;
  try {
    if (typeof p === 'function') await p();
    else await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected an error with code ${code}, but the call succeeded`);
  assert.ok(err instanceof SemDedupError, `expected a SemDedupError, got ${(err as Error)?.stack ?? String(err)}`);
  assert.equal(err.code, code, `wrong code for: ${err.message}`);
  for (const s of parts) {
    if (typeof s === 'string') assert.ok(err.message.includes(s), `message should mention ${JSON.stringify(s)}: ${err.message}`);
    else assert.match(err.message, s);
  }
  if (extra.file !== undefined) assert.equal(err.file, extra.file, `error.file for: ${err.message}`);
  if (extra.key !== undefined) assert.equal(err.key, extra.key, `error.key for: ${err.message}`);
  return err;
}


const STEP_OUTPUTS = {
  cluster: ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy'],
  sort: ['semdedup/cluster_order.npy', 'semdedup/cluster_offsets.npy'],
  dedup: ['semdedup/M.npy', 'semdedup/M_row.npy', 'semdedup/keep_order.npy', 'semdedup/summary.json'],
};

/** No temp files anywhere under `dir`, and none of the outputs of the failed steps. */
function assertNoHalfOutput(dir: string, failedSteps: (keyof typeof STEP_OUTPUTS)[], what: string): void {
  const files = listFiles(dir);
  const temps = files.filter((f) => /\.tmp-|\.partial$/.test(f));
  assert.deepEqual(temps, [], `${what}: temporary files left in ${dir}`);
  for (const s of failedSteps)
    for (const f of STEP_OUTPUTS[s]) assert.ok(!files.includes(f), `${what}: ${f} was left in ${dir} by a failed ${s} step (files: ${files.join(', ')})`);
}

/** A generated dataset (float32 rows, L2-normalised). */
function dataset(seed = 7, n = N): Float32Array {
  return new SynthDataset({ n, dim: DIM, clusters: K, seed }).generate();
}

function writeRaw(file: string, X: Float32Array): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  return file;
}

function defaultIds(n = N): string[] {
  return Array.from({ length: n }, (_, i) => `n0423_${String(i).padStart(6, '0')}.JPEG`);
}

interface Setup {
  dir: string;
  emb: string;
  ids: string;
  out: string;
  cl: string;
  sd: string;
}

/**
 * A folder with the data and the original's two config files (absolute paths), with optional
 * changes to the rows, the ids and the config lines.
 */
function setup(
  opts: {
    X?: Float32Array;
    ids?: string[];
    n?: number;
    clExtra?: string;
    sdExtra?: string;
    clLines?: Record<string, string>;
    out?: string;
  } = {},
): Setup {
  const dir = tmp();
  const emb = writeRaw(path.join(dir, 'data', 'embs_memory.npy'), opts.X ?? dataset());
  const ids = path.join(dir, 'data', 'paths_memory.npy');
  writeIdsMemmap(ids, opts.ids ?? defaultIds(opts.n ?? N), 24);
  const out = opts.out ?? path.join(dir, 'output');
  const clLines: Record<string, string> = {
    sim_metric: "'cosine'",
    keep_hard: 'True',
    Kmeans_with_cos_dist: 'True',
    emb_memory_loc: JSON.stringify(emb),
    text_emb_memory_loc: 'None',
    paths_memory_loc: JSON.stringify(ids),
    sorted_clusters_file_loc: JSON.stringify(path.join(out, 'sorted_clusters')),
    save_folder: JSON.stringify(out),
    path_str_dtype: '"S24"',
    ncentroids: String(K),
    dataset_size: String(opts.n ?? N),
    emb_size: String(DIM),
    niter: '20',
    seed: '1234',
    ...opts.clLines,
  };
  const cl = path.join(dir, 'clustering_configs.yaml');
  writeFileSync(cl, Object.entries(clLines).map(([k, v]) => `${k}: ${v}`).join('\n') + '\n' + (opts.clExtra ?? ''));
  const sd = path.join(dir, 'semdedup_configs.yaml');
  writeFileSync(
    sd,
    [
      `save_folder: ${JSON.stringify(out)}`,
      `sorted_clusters_path: ${JSON.stringify(path.join(out, 'sorted_clusters'))}`,
      `num_clusters: ${K}`,
      `embs_memory_loc: ${JSON.stringify(emb)}`,
      `dataset_size: ${opts.n ?? N}`,
      `emd_size: ${DIM}`,
      'which_to_keep: "hard"',
      'seed: 1234',
      'largest_cluster_size_to_process: 10000000',
    ].join('\n') + '\n' + (opts.sdExtra ?? ''),
  );
  return { dir, emb, ids, out, cl, sd };
}

function prepareSorted(s: Setup): void {
  for (const args of [['cluster', '--config', s.cl, '-q'], ['sort', '--config', s.cl, '-q']]) {
    const r = cli(args, s.dir);
    assert.equal(r.code, 0, `${args[0]} failed: ${r.stderr}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Embeddings files.

test('errors: raw memmap whose size does not match dataset_size × emb_size', async () => {
  const s = setup({ X: dataset(7, N - 1) }); // one row short
  const r = cli(['cluster', '--config', s.cl], s.dir);
  expectCliError(r, [s.emb, 'dataset_size', 'file size', String((N - 1) * DIM * 4), String(N * DIM * 4)], 'size mismatch (CLI)');
  assertNoHalfOutput(s.out, ['cluster'], 'size mismatch (CLI)');
  await expectApiError(runCluster(loadConfigFiles([s.cl])), 'ERR_INPUT', [s.emb, 'dataset_size'], { file: s.emb, key: 'dataset_size' });
  assertNoHalfOutput(s.out, ['cluster'], 'size mismatch (API)');

  // Without dataset_size: a size that is no multiple of the row size.
  const t = tmp();
  const emb = path.join(t, 'e.f32');
  writeFileSync(emb, Buffer.alloc(N * DIM * 4 + 6));
  const cfg = path.join(t, 'c.yaml');
  writeFileSync(cfg, `embeddings: e.f32\ndim: ${DIM}\noutput_dir: out\nk: ${K}\n`);
  expectCliError(cli(['run', '--config', cfg], t), [emb, 'multiple', 'row size'], 'size not a multiple (CLI)');
  assertNoHalfOutput(path.join(t, 'out'), ['cluster', 'sort', 'dedup'], 'size not a multiple');
  await expectApiError(runAll(loadConfigFiles([cfg])), 'ERR_INPUT', [emb, 'multiple'], { file: emb });
});

function npyConfig(t: string, file: string, extra = ''): string {
  const cfg = path.join(t, 'c.yaml');
  writeFileSync(cfg, `embeddings: ${JSON.stringify(file)}\noutput_dir: out\nk: ${K}\n${extra}`);
  return cfg;
}

function validNpy(X: Float32Array, n: number): Buffer {
  return Buffer.concat([npyHeaderBytes('<f4', [n, DIM]), Buffer.from(X.buffer, X.byteOffset, X.byteLength)]);
}

test('errors: truncated .npy header', async () => {
  const t = tmp();
  const file = path.join(t, 'emb.npy');
  writeFileSync(file, validNpy(dataset(), N).subarray(0, 40)); // magic, version, part of the header
  const cfg = npyConfig(t, file);
  expectCliError(cli(['cluster', '--config', cfg], t), [file, /truncated/i], 'truncated header (CLI)');
  assertNoHalfOutput(path.join(t, 'out'), ['cluster'], 'truncated header');
  await expectApiError(runCluster(loadConfigFiles([cfg])), 'ERR_INPUT', [file, 'truncated'], { file });
  // A header that ends inside the magic itself, with the format named.
  const file2 = path.join(t, 'emb2.npy');
  writeFileSync(file2, Buffer.from([0x93, 0x4e, 0x55]));
  const cfg2 = npyConfig(t, file2, 'embeddings_format: npy\n');
  expectCliError(cli(['cluster', '--config', cfg2], t), [file2], 'three-byte npy (CLI)');
  await expectApiError(runCluster(loadConfigFiles([cfg2])), 'ERR_INPUT', [file2], { file: file2 });
});

test('errors: corrupt .npy (bad magic)', async () => {
  const t = tmp();
  const file = path.join(t, 'emb.npy');
  const bytes = validNpy(dataset(), N);
  bytes[1] = 0x58; // \x93XUMPY
  writeFileSync(file, bytes);
  const cfg = npyConfig(t, file, 'embeddings_format: npy\n');
  expectCliError(cli(['cluster', '--config', cfg], t), [file, /magic/i], 'bad magic (CLI)');
  assertNoHalfOutput(path.join(t, 'out'), ['cluster'], 'bad magic');
  await expectApiError(runCluster(loadConfigFiles([cfg])), 'ERR_INPUT', [file, 'magic'], { file });
});

test('errors: corrupt .npy (bad magic) with the default format auto is reported as a bad .npy, not read as raw rows', async () => {
  // A .npy whose magic is damaged: with embeddings_format auto (the default) it must not be taken
  // for a raw memmap whose first "rows" are the header bytes.
  const t = tmp();
  const file = path.join(t, 'emb.npy');
  const bytes = validNpy(dataset(), N);
  bytes[1] = 0x58; // \x93XUMPY, the rest of the header intact
  writeFileSync(file, bytes);
  const cfg = npyConfig(t, file, `dim: ${DIM}\n`);
  expectCliError(cli(['cluster', '--config', cfg], t), [file, /magic|\.npy header/i], 'bad magic, format auto (CLI)');
  assertNoHalfOutput(path.join(t, 'out'), ['cluster'], 'bad magic, format auto');
  await expectApiError(runCluster(loadConfigFiles([cfg])), 'ERR_INPUT', [file, /magic|\.npy header/i], { file });
});

test('errors: a missing embeddings file', async () => {
  const s = setup();
  const missing = path.join(s.dir, 'data', 'nope.npy');
  const cfg = path.join(s.dir, 'missing.yaml');
  writeFileSync(cfg, readFileSync(s.cl, 'utf8').replace(JSON.stringify(s.emb), JSON.stringify(missing)));
  expectCliError(cli(['cluster', '--config', cfg], s.dir), [missing, /not found/i], 'missing embeddings (CLI)');
  expectCliError(cli(['run', '--config', cfg, '--config', s.sd], s.dir), [missing], 'missing embeddings, run (CLI)');
  assertNoHalfOutput(s.out, ['cluster', 'sort', 'dedup'], 'missing embeddings');
  await expectApiError(runCluster(loadConfigFiles([cfg])), 'ERR_INPUT', [missing, 'not found'], { file: missing, key: 'embeddings' });
});

// ---------------------------------------------------------------------------------------------
// Row checks.

test('errors: NaN in a row and Inf in a row name the row', async () => {
  for (const [bad, label, row] of [[NaN, 'NaN', 123], [Infinity, 'Inf', 1456], [-Infinity, 'Inf', 9]] as const) {
    const X = dataset();
    X[row * DIM + 5] = bad;
    const s = setup({ X });
    const r = cli(['cluster', '--config', s.cl], s.dir);
    expectCliError(r, [s.emb, `row ${row}`, label], `${label} (CLI)`);
    assertNoHalfOutput(s.out, ['cluster'], `${label} (CLI)`);
    const e = await expectApiError(runAll(loadConfigFiles([s.cl, s.sd])), 'ERR_NUMERIC', [s.emb, `row ${row}`, label], { file: s.emb });
    assert.ok(e.message.includes('NaN') || e.message.includes('Inf'));
    assertNoHalfOutput(s.out, ['cluster', 'sort', 'dedup'], `${label} (API)`);
  }
});

test('errors: an all-zero row', async () => {
  const X = dataset();
  X.fill(0, 777 * DIM, 778 * DIM);
  const s = setup({ X });
  expectCliError(cli(['cluster', '--config', s.cl], s.dir), [s.emb, 'row 777', /zero/i], 'zero row (CLI)');
  assertNoHalfOutput(s.out, ['cluster'], 'zero row');
  // `always` cannot normalise a zero row either.
  expectCliError(cli(['cluster', '--config', s.cl, '--normalize', 'always'], s.dir), [s.emb, 'row 777', /zero/i], 'zero row, always (CLI)');
  assertNoHalfOutput(s.out, ['cluster'], 'zero row, always');
  await expectApiError(runCluster(loadConfigFiles([s.cl])), 'ERR_NUMERIC', [s.emb, 'row 777'], { file: s.emb });
});

/** Rows scaled by 0.5, 1, 1.5, 2, 2.5 in turn (row 0 by 0.5). */
function scaled(X: Float32Array): Float32Array {
  const Y = new Float32Array(X.length);
  for (let i = 0; i < X.length / DIM; i++) {
    const f = 0.5 + 0.5 * (i % 5);
    for (let j = 0; j < DIM; j++) Y[i * DIM + j] = X[i * DIM + j]! * f;
  }
  return Y;
}

/** L2-normalised float32 copy (float64 sum of squares, times 1/norm). */
function normalised(Y: Float32Array): Float32Array {
  const Z = new Float32Array(Y.length);
  for (let i = 0; i < Y.length / DIM; i++) {
    let s = 0;
    for (let j = 0; j < DIM; j++) s += Y[i * DIM + j]! * Y[i * DIM + j]!;
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < DIM; j++) Z[i * DIM + j] = Y[i * DIM + j]! * inv;
  }
  return Z;
}

test('errors: rows that are not normalised (normalize auto / always / never)', async () => {
  const Y = scaled(dataset());
  // auto (the default): an error that says what to do.
  const a = setup({ X: Y });
  expectCliError(cli(['cluster', '--config', a.cl], a.dir), [a.emb, 'row 0', /normali[sz]ed/, 'normalize'], 'unnormalised, auto (CLI)');
  assertNoHalfOutput(a.out, ['cluster'], 'unnormalised, auto');
  await expectApiError(runCluster(loadConfigFiles([a.cl])), 'ERR_NUMERIC', [a.emb, 'normalize'], { file: a.emb });
  assertNoHalfOutput(a.out, ['cluster'], 'unnormalised, auto (API)');

  // always: runs on a normalised copy; same results as on pre-normalised data.
  const r1 = cli(['run', '--config', a.cl, '--config', a.sd, '--eps-list', '0.01,0.05', '--normalize', 'always', '-q'], a.dir);
  assert.equal(r1.code, 0, r1.stderr);
  const Z = normalised(Y);
  const b = setup({ X: Z });
  const r2 = cli(['run', '--config', b.cl, '--config', b.sd, '--eps-list', '0.01,0.05', '-q'], b.dir);
  assert.equal(r2.code, 0, r2.stderr);
  const copy = path.join(a.out, 'semdedup', 'normalized_embeddings.f32');
  assert.ok(existsSync(copy), 'normalize always: the normalised copy is in the output folder');
  const C = new Float32Array(readFileSync(copy).buffer.slice(0));
  assert.equal(C.length, Z.length);
  let maxDiff = 0;
  for (let i = 0; i < C.length; i++) maxDiff = Math.max(maxDiff, Math.abs(C[i]! - Z[i]!));
  assert.ok(maxDiff <= 1e-6, `the normalised copy differs from L2-normalised rows by ${maxDiff}`);
  assert.deepEqual(readFileSync(a.emb), Buffer.from(Y.buffer), 'the input file is left as it was');
  assert.deepEqual(readNpy(path.join(a.out, 'nearest_cent.npy')).data, readNpy(path.join(b.out, 'nearest_cent.npy')).data, 'nearest_cent');
  const Ma = readNpy(path.join(a.out, 'semdedup', 'M.npy')).data as Float64Array;
  const Mb = readNpy(path.join(b.out, 'semdedup', 'M.npy')).data as Float64Array;
  assert.equal(Ma.length, Mb.length);
  for (let i = 0; i < Ma.length; i++) assert.ok(Math.abs(Ma[i]! - Mb[i]!) <= 1e-6, `M[${i}]: ${Ma[i]} vs ${Mb[i]}`);
  for (const eps of ['0.01', '0.05'])
    assert.equal(readFileSync(path.join(a.out, `kept_eps${eps}.txt`), 'utf8'), readFileSync(path.join(b.out, `kept_eps${eps}.txt`), 'utf8'), `kept ids at eps ${eps}`);

  // never: used as they are (no copy; similarities are raw dot products, some above 1).
  const c = setup({ X: Y });
  const r3 = cli(['run', '--config', c.cl, '--config', c.sd, '--eps-list', '0.05', '--normalize', 'never', '-q'], c.dir);
  assert.equal(r3.code, 0, r3.stderr);
  assert.ok(!existsSync(path.join(c.out, 'semdedup', 'normalized_embeddings.f32')), 'normalize never writes no copy');
  const Mc = readNpy(path.join(c.out, 'semdedup', 'M.npy')).data as Float64Array;
  assert.ok(Mc.some((m) => m > 1.5), 'normalize never: M holds raw dot products (> 1 for scaled copies)');
  const viaApi = await runAll(loadConfigFiles([c.cl, c.sd], { normalize: 'never', eps_list: '0.05' }));
  assert.deepEqual(viaApi.dedup.M, Mc);
});

// ---------------------------------------------------------------------------------------------
// Ids.

test('errors: duplicate ids name both rows', async () => {
  const ids = defaultIds();
  ids[1500] = ids[10]!;
  const s = setup({ ids });
  const r = cli(['run', '--config', s.cl, '--config', s.sd, '--eps-list', '0.05'], s.dir);
  expectCliError(r, [s.ids, ids[10]!, /\b10\b/, /\b1500\b/, /unique/], 'duplicate ids (CLI run)');
  assertNoHalfOutput(s.out, ['cluster', 'sort', 'dedup'], 'duplicate ids');
  await expectApiError(runAll(loadConfigFiles([s.cl, s.sd])), 'ERR_INPUT', [s.ids, 'rows 10 and 1500'], { file: s.ids });
});

test('errors: duplicate ids are refused by extract too (ids written to the list must be unique)', async () => {
  const ids = defaultIds();
  ids[1500] = ids[10]!;
  const s = setup({ ids });
  // cluster / sort / dedup need no ids; extract writes them.
  prepareSorted(s);
  const d = cli(['dedup', '--config', s.sd, '--eps-list', '0.05', '-q'], s.dir);
  assert.equal(d.code, 0, d.stderr);
  const kept = path.join(s.dir, 'kept.txt');
  const r = cli(['extract', '--config', s.cl, '--eps', '0.05', '--output', kept], s.dir);
  expectCliError(r, [s.ids, /\b10\b/, /\b1500\b/], 'duplicate ids (CLI extract)');
  assert.ok(!existsSync(kept), 'no id list is written from ambiguous ids');
  await expectApiError(runExtract(loadConfigFiles([s.cl]), 0.05, kept), 'ERR_INPUT', [s.ids, '10', '1500'], { file: s.ids });
});

// ---------------------------------------------------------------------------------------------
// Config values.

test('errors: k larger than N', async () => {
  const s = setup({ clLines: { ncentroids: '5000' } });
  expectCliError(cli(['cluster', '--config', s.cl], s.dir), ['5000', String(N), s.emb, /ncentroids|\bk\b/], 'k > N (CLI)');
  assertNoHalfOutput(s.out, ['cluster'], 'k > N');
  await expectApiError(runCluster(loadConfigFiles([s.cl])), 'ERR_CONFIG', ['5000', String(N)], { key: 'k' });
  assertNoHalfOutput(s.out, ['cluster'], 'k > N (API)');
});

const BAD_EPS = ['0', '1', '-0.1', '1.5', 'abc'];

test('errors: eps outside (0, 1) via --eps-list, --eps and the config', async () => {
  const s = setup();
  prepareSorted(s);
  for (const eps of BAD_EPS) {
    const r = cli(['dedup', '--config', s.sd, `--eps-list=${eps}`], s.dir);
    expectCliError(r, ['eps', `'${eps}'`, /between 0 and 1/], `--eps-list ${eps}`);
    assert.equal(r.code, 2, `--eps-list ${eps}: a config error exits 2`);
    const r2 = cli(['dedup', '--config', s.sd, '--eps-list', `0.05,${eps}`], s.dir);
    expectCliError(r2, ['eps', eps], `--eps-list 0.05,${eps}`);
    assertNoHalfOutput(s.out, ['dedup'], `--eps-list ${eps}`);

    // In a config file (our key, next to the original's files).
    const f = path.join(s.dir, `eps_${eps}.yaml`);
    writeFileSync(f, `eps_list: [0.05, ${eps === 'abc' ? 'abc' : eps}]\n`);
    const r3 = cli(['dedup', '--config', s.sd, '--config', f], s.dir);
    expectCliError(r3, [f, 'eps_list', /between 0 and 1/], `eps_list config ${eps}`);
    assertNoHalfOutput(s.out, ['dedup'], `eps_list config ${eps}`);
    assert.throws(() => loadConfigFiles([s.sd, f]), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG' && e.key === 'eps_list' && e.file === f && e.message.includes(f));
    // And through the API with a list of numbers.
    const num = eps === 'abc' ? NaN : Number(eps);
    await expectApiError(withSpec(semdedup, { embeddings: { path: s.emb, dim: DIM }, outputDir: s.out, epsList: [0.05, num] }), 'ERR_CONFIG', ['eps'], { key: 'eps_list' });
    assertNoHalfOutput(s.out, ['dedup'], `eps ${eps} (API)`);
  }
  const t = s;
  await expectApiError(() => runDedup(loadConfigFiles([t.sd], { eps_list: [0.05, 0] })), 'ERR_CONFIG', ['eps_list'], { key: 'eps_list' });
  assertNoHalfOutput(t.out, ['dedup'], 'eps (API)');
  // extract --eps.
  for (const eps of BAD_EPS) {
    const kept = path.join(t.dir, 'kept.txt');
    expectCliError(cli(['extract', '--config', t.sd, `--eps=${eps}`, '--output', kept], t.dir), ['eps', eps], `--eps ${eps}`);
    assert.ok(!existsSync(kept));
  }
});

test('errors: config with a wrong type', async () => {
  for (const [key, value, want] of [
    ['ncentroids', '"four"', /positive integer/],
    ['niter', '2.5', /positive integer/],
    ['Kmeans_with_cos_dist', '"maybe"', /boolean/],
    ['emb_size', '[16]', /positive integer/],
  ] as const) {
    const s = setup({ clLines: { [key]: value } });
    expectCliError(cli(['cluster', '--config', s.cl], s.dir), [s.cl, `'${key}'`, want], `wrong type ${key}`);
    assertNoHalfOutput(s.out, ['cluster'], `wrong type ${key}`);
    assert.ok(!existsSync(s.out), `wrong type ${key}: the output folder is not even created`);
    assert.throws(
      () => loadConfigFiles([s.cl]),
      (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG' && e.file === s.cl && e.message.includes(key) && want.test(e.message),
    );
  }
});

test('errors: unknown config key suggests the nearest valid key', async () => {
  const s = setup({ clExtra: 'ncentriods: 4\n' });
  expectCliError(cli(['cluster', '--config', s.cl], s.dir), [s.cl, "'ncentriods'", "Did you mean 'ncentroids'"], 'unknown key (CLI)');
  const s2 = setup({ sdExtra: 'which_to_kep: "easy"\n' });
  expectCliError(cli(['dedup', '--config', s2.sd], s2.dir), [s2.sd, "'which_to_kep'", "'which_to_keep'"], 'unknown key in semdedup config (CLI)');
  assert.throws(
    () => loadConfigFiles([s.cl]),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG' && e.key === 'ncentriods' && e.file === s.cl && /Did you mean 'ncentroids'/.test(e.message),
  );
  // --set with an unknown key too.
  expectCliError(cli(['cluster', '--config', s2.cl, '--set', 'nitre=5'], s2.dir), ["'nitre'", "'niter'"], 'unknown --set key');
  assertNoHalfOutput(s2.out, ['cluster'], 'unknown key');
});

test('errors: a leftover template placeholder', async () => {
  const t = tmp();
  for (const name of ['clustering_configs', 'semdedup_configs']) {
    const f = path.join(FIXTURES, `${name}.template.yaml`);
    const cmd = name === 'clustering_configs' ? 'cluster' : 'dedup';
    expectCliError(cli([cmd, '--config', f], t), [f, '<your path>', /placeholder/], `placeholder ${name}`);
    assert.throws(() => loadConfigFiles([f]), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG' && e.file === f && e.message.includes('<your path>') && e.key !== undefined);
  }
  // A placeholder only in dataset_size (the rest filled in).
  const s = setup({ clLines: { dataset_size: '<dataset_size>' } });
  expectCliError(cli(['cluster', '--config', s.cl], s.dir), [s.cl, "'dataset_size'", '<dataset_size>'], 'placeholder dataset_size');
  assertNoHalfOutput(s.out, ['cluster'], 'placeholder');
  assert.deepEqual(listFiles(t), [], 'nothing written for a template config');
});

test('errors: sim_metric l2 with spherical k-means', async () => {
  const s = setup({ clLines: { sim_metric: "'l2'" } });
  for (const cmd of ['cluster', 'sort', 'run']) {
    expectCliError(cli([cmd, '--config', s.cl], s.dir), [s.cl, 'sim_metric', 'l2', /spherical|Kmeans_with_cos_dist/], `l2 + spherical (${cmd})`);
  }
  assertNoHalfOutput(s.out, ['cluster', 'sort', 'dedup'], 'l2 + spherical');
  assert.throws(() => loadConfigFiles([s.cl]), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG' && e.key === 'sim_metric' && e.file === s.cl);
  // The step itself refuses it too (API without the config loader).
  const ok = setup();
  prepareSorted(ok);
  const before = readFileSync(path.join(ok.out, 'semdedup', 'cluster_order.npy'));
  await expectApiError(withSpec(assignAndSortClusters, { outputDir: ok.out, simMetric: 'l2', spherical: true }), 'ERR_CONFIG', ['l2', 'spherical'], { key: 'sim_metric' });
  assert.deepEqual(readFileSync(path.join(ok.out, 'semdedup', 'cluster_order.npy')), before, 'earlier outputs untouched');
});

// ---------------------------------------------------------------------------------------------
// Outputs and step order.

test('errors: an output folder that cannot be created (its parent is a regular file)', async () => {
  const s0 = setup();
  const blocker = path.join(s0.dir, 'not-a-folder');
  writeFileSync(blocker, 'a file\n');
  const out = path.join(blocker, 'output');
  const s = setup({ out });
  expectCliError(cli(['cluster', '--config', s.cl], s.dir), [out, /output folder|cannot/], 'unwritable output (CLI cluster)');
  expectCliError(cli(['run', '--config', s.cl, '--config', s.sd], s.dir), [out], 'unwritable output (CLI run)');
  await expectApiError(runCluster(loadConfigFiles([s.cl])), 'ERR_OUTPUT', [out], { file: out });
  assert.equal(readFileSync(blocker, 'utf8'), 'a file\n', 'the blocking file is untouched');
  assert.deepEqual(listFiles(s0.dir).filter((f) => /\.tmp-/.test(f)), [], 'no temp files');

  // extract --output into a folder whose parent is a file.
  const ok = setup();
  prepareSorted(ok);
  assert.equal(cli(['dedup', '--config', ok.sd, '--eps-list', '0.05', '-q'], ok.dir).code, 0);
  const bad = path.join(blocker, 'kept.txt');
  expectCliError(cli(['extract', '--config', ok.sd, '--eps', '0.05', '--output', bad], ok.dir), [bad], 'unwritable --output');
  await expectApiError(runExtract(loadConfigFiles([ok.sd]), 0.05, bad), 'ERR_OUTPUT', [bad], { file: bad });
  assert.deepEqual(listFiles(ok.out).filter((f) => /\.tmp-/.test(f)), []);
  assert.ok(statSync(blocker).isFile());
});

test('errors: extract before dedup says to run dedup first', async () => {
  const s = setup();
  const kept = path.join(s.dir, 'kept.txt');
  // Nothing at all yet.
  expectCliError(cli(['extract', '--config', s.sd, '--eps', '0.05', '--output', kept], s.dir), [/run (the )?dedup|semdedup dedup/], 'extract on an empty folder');
  assert.ok(!existsSync(kept));
  // After cluster and sort, before dedup.
  prepareSorted(s);
  const r = cli(['extract', '--config', s.sd, '--eps', '0.05', '--output', kept], s.dir);
  expectCliError(r, [s.out, /dedup/, /first/], 'extract before dedup');
  assert.ok(!existsSync(kept), 'no id list written');
  await expectApiError(runExtract(loadConfigFiles([s.sd]), 0.05, kept), 'ERR_INPUT', ['semdedup dedup', 'first']);
  assert.ok(!existsSync(kept));
  // dedup before sort, too.
  const t = setup();
  expectCliError(cli(['dedup', '--config', t.sd, '--eps-list', '0.05'], t.dir), [/sort/, /first/], 'dedup before sort');
  await expectApiError(runSort(loadConfigFiles([t.cl])), 'ERR_INPUT', [/cluster/]);
  assertNoHalfOutput(t.out, ['dedup', 'sort'], 'steps out of order');
});
