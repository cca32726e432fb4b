// The API as a TypeScript service uses it: runAll with partial, typed options (the schema's
// defaults, k from N), the threshold key and the eps warning, messages in the user's own key
// names, one run per folder inside one process, and the in-memory call (typed arrays and ids in,
// kept ids and duplicates with their similarity out) checked against the file-based run and a
// float64 reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  runAll,
  dedup,
  defaultK,
  configWarnings,
  loadConfigFiles,
  resolveOptions,
  writeNpy,
  SemDedupError,
  type RunAllOptions,
  type InMemoryDedupResult,
} from '../src/index.js';
import { rng, tmpFolder } from './helpers.js';
import { lockOutputDir, withLock } from '../src/lock.js';
import { referenceFromHalf, referenceToHalf } from './reference.js';


/** N unit rows of dimension D: `base` random rows, then near-copies of the first `dups` of them. */
function dataset(base: number, dups: number, d: number, seed: number, noise = 0.01): Float32Array {
  const r = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const n = base + dups;
  const X = new Float32Array(n * d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) {
      row[j] = i < base ? gauss() : X[(i - base) * d + j]! + noise * gauss();
      s += row[j]! * row[j]!;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < d; j++) X[i * d + j] = row[j]! * inv;
  }
  return X;
}

/** The float64 dot product of rows a and b (float32 values, summed in float64). */
function dot64(X: ArrayLike<number>, d: number, a: number, b: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += X[a * d + j]! * X[b * d + j]!;
  return s;
}

const D = 16;
const BASE = 1000;
const DUPS = 150;
const N = BASE + DUPS;
const X = dataset(BASE, DUPS, D, 7);
const IDS = Array.from({ length: N }, (_, i) => `doc-${String(i).padStart(5, '0')}`);

function setup(tag: string): { dir: string; emb: string; ids: string } {
  const dir = tmpFolder(`api-${tag}`);
  const emb = path.join(dir, 'emb.npy');
  writeNpy(emb, X, { shape: [N, D] });
  const ids = path.join(dir, 'ids.txt');
  writeFileSync(ids, IDS.join('\n') + '\n');
  return { dir, emb, ids };
}

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
}

test('api: runAll takes partial typed options; the rest are the schema defaults, k defaults from N', async () => {
  const { dir, emb, ids } = setup('partial');
  const logs: string[] = [];
  const opts: RunAllOptions = { embeddings: emb, ids, outputDir: path.join(dir, 'out'), epsList: [0.05] };
  // @ts-expect-error a misspelt option is a compile error (and a ConfigError at run time)
  const typo: RunAllOptions = { embeddings: emb, outputDir: path.join(dir, 'out'), ncentroid: 3 };
  await assert.rejects(runAll(typo), (e: SemDedupError) => e.code === 'ERR_CONFIG' && /unknown key 'ncentroid'/.test(e.message));
  const r = await runAll(opts, { log: (l) => logs.push(l) });
  // k from N: round(√1150) = 34, below 1150 / 39 = 29.5 → 29.
  assert.equal(defaultK(N), 29);
  assert.equal(r.cluster.k, 29);
  assert.ok(logs.some((l) => /k not set: using k = 29 for N = 1150 rows/.test(l)), logs.join('\n'));
  const summary = JSON.parse(readFileSync(path.join(dir, 'out', 'semdedup', 'summary.json'), 'utf8'));
  assert.equal(summary.clusters, 29);
  assert.equal(summary.whichToKeep, 'hard', 'the schema default');
  const manifest = JSON.parse(readFileSync(path.join(dir, 'out', 'semdedup', 'manifest.json'), 'utf8'));
  assert.equal(manifest.config.k, 29, 'the k used is recorded');
  assert.equal(manifest.config.niter, 20, 'the schema default');
  // The same run from a loaded config with k given: the same kept ids.
  const c = loadConfigFiles([], { embeddings: emb, ids, output_dir: path.join(dir, 'out2'), ncentroids: 29, eps_list: '0.05' });
  await runAll(c);
  assert.deepEqual(lines(path.join(dir, 'out2', 'kept_eps0.05.txt')), lines(path.join(dir, 'out', 'kept_eps0.05.txt')));
  // Typed overrides of config files: the file's keys, then the options.
  const file = path.join(dir, 'c.yaml');
  writeFileSync(file, `emb_memory_loc: ${emb}\nncentroids: 7\nseed: 5\n`);
  const merged = resolveOptions({ k: 29, outputDir: 'o' }, { files: [file], cwd: dir });
  assert.equal(merged.k, 29);
  assert.equal(merged.seed, 5);
  assert.equal(merged.outputDir, path.join(dir, 'o'));
  // @ts-expect-error typed: a misspelt override does not compile
  assert.throws(() => resolveOptions({ ncentroid: 3 }, { files: [file] }), /unknown key 'ncentroid'/);
  // The default, its bounds.
  assert.equal(defaultK(1), 1);
  assert.equal(defaultK(30), 1);
  assert.equal(defaultK(1_000_000), 1000);
  assert.equal(defaultK(440_000_000), 20976);
  assert.equal(defaultK(1000, 10), 32);
});

test('api: threshold is eps = 1 − similarity; eps ≥ 0.5 warns; messages use the names the user wrote', async () => {
  assert.deepEqual(loadConfigFiles([], { threshold: 0.9 }).epsList, [0.1]);
  assert.deepEqual(loadConfigFiles([], { threshold: '0.9,0.95' }).epsList, [0.1, 0.05]);
  const dir = tmpFolder('api-names');
  const f = path.join(dir, 'c.yaml');
  writeFileSync(f, 'threshold: [0.9, 0.99]\n');
  const c = loadConfigFiles([f]);
  assert.deepEqual(c.epsList, [0.1, 0.01]);
  assert.equal(c.names?.eps_list, 'threshold');
  writeFileSync(f, 'threshold: 0.9\neps_list: [0.05]\n');
  assert.throws(() => loadConfigFiles([f]), /keys 'threshold' and 'eps_list' both set 'eps_list'|keys 'eps_list' and 'threshold' both set 'eps_list'/);
  writeFileSync(f, 'threshold: 1.5\n');
  assert.throws(() => loadConfigFiles([f]), /key 'threshold' must hold numbers strictly between 0 and 1/);

  // eps ≥ 0.5: a similarity given as eps.
  assert.deepEqual(configWarnings(loadConfigFiles([], { eps_list: '0.01,0.1' })), []);
  const w = configWarnings(loadConfigFiles([], { eps_list: '0.9' }));
  assert.equal(w.length, 1);
  assert.match(w[0]!, /eps 0\.9 \(eps_list\) removes every member whose cosine similarity .* above 0\.1.*give eps 0\.1 or threshold: 0\.9/);
  assert.match(configWarnings(loadConfigFiles([], { threshold: 0.3 }))[0]!, /threshold 0\.3/);
  const { emb } = setup('warn');
  const logs: string[] = [];
  await runAll({ embeddings: emb, outputDir: path.join(dir, 'warn'), k: 5, epsList: [0.6] }, { log: (l) => logs.push(l) });
  assert.ok(logs.some((l) => /^warning: eps 0\.6/.test(l)), logs.join('\n'));

  // The user's own names: `dim` (ours) or `emb_size` (the original's), and `ncentroids`.
  writeFileSync(f, `embeddings: ${emb}\ndim: 256\noutput_dir: out\nk: 5\n`);
  await assert.rejects(runAll(loadConfigFiles([f])), (e: Error) => /the config says dim 256 but the \.npy holds rows of 16 values/.test(e.message));
  writeFileSync(f, `emb_memory_loc: ${emb}\nemb_size: 256\nsave_folder: ${path.join(dir, 'o2')}\nncentroids: 5\n`);
  await assert.rejects(runAll(loadConfigFiles([f])), (e: Error) => /the config says emb_size 256/.test(e.message));
  writeFileSync(f, `emb_memory_loc: ${emb}\nsave_folder: ${path.join(dir, 'o3')}\nncentroids: 5000\n`);
  await assert.rejects(runAll(loadConfigFiles([f])), (e: Error) => /^ncentroids = 5000 .*larger than the number of rows N = 1150/.test(e.message));
  assert.ok(!existsSync(path.join(dir, 'o2')) && !existsSync(path.join(dir, 'o3')), 'nothing created before validation passes');
});

test('api: two runs on one folder in one process: the second refuses at once, as across processes', async () => {
  const { dir, emb } = setup('lock');
  const cfg: RunAllOptions = { embeddings: emb, outputDir: path.join(dir, 'out'), k: 10, epsList: [0.05] };
  const order: string[] = [];
  const tag = (name: string, p: Promise<unknown>) => p.then(() => order.push(`${name} ok`), () => order.push(`${name} refused`));
  const a = runAll(cfg);
  const b = runAll(cfg);
  const tagged = [tag('a', a), tag('b', b)];
  const [ra, rb] = await Promise.allSettled([a, b]);
  await Promise.all(tagged);
  const settled = [ra, rb];
  const ok = settled.filter((s) => s.status === 'fulfilled');
  const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
  assert.equal(ok.length, 1, 'one run completes');
  assert.equal(refused.length, 1, 'the other refuses');
  const e = refused[0]!.reason as SemDedupError;
  assert.equal(e.code, 'ERR_OUTPUT');
  assert.match(e.message, new RegExp(`the output folder is in use by another semdedup run \\(pid ${process.pid}\\)`));
  // The refusal came before the other run finished (not after its 14 s of work).
  assert.match(order[0]!, /refused/);
  // The lock is released: the folder is usable again, and the completed run's files are whole.
  await runAll(cfg);
  assert.equal(lines(path.join(dir, 'out', 'kept_eps0.05.txt')).length > 0, true);
});

test('api: the lock inside one process: nested calls share it, independent ones refuse, shared holders share', async () => {
  const dir = tmpFolder('api-lock-unit');
  const inner = await withLock(dir, async () => withLock(dir, async () => 'nested'));
  assert.equal(inner, 'nested', 'a command that runs others shares its lock with them');
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const first = withLock(dir, () => held);
  await assert.rejects(withLock(dir, async () => 'second'), (e: SemDedupError) => e.code === 'ERR_OUTPUT' && e.message.includes(`in use by another semdedup run (pid ${process.pid})`));
  assert.throws(() => lockOutputDir(dir, [], { shared: true }), /in use by another semdedup run/, 'shared refuses while an exclusive holder works');
  release();
  await first;
  const a = lockOutputDir(dir, [], { shared: true });
  const b = lockOutputDir(dir, [], { shared: true });
  assert.throws(() => lockOutputDir(dir), /in use by another semdedup run/, 'exclusive refuses while shared holders work');
  a.release();
  b.release();
  lockOutputDir(dir).release();
});

/** The file-based run's kept ids for eps on X (written as `dtype`). */
async function fileRun(tag: string, data: Float32Array | Uint16Array, eps: number, k: number): Promise<string[]> {
  const dir = tmpFolder(`api-${tag}`);
  const emb = path.join(dir, 'emb.npy');
  writeNpy(emb, data, { shape: [N, D], float16: data instanceof Uint16Array });
  const ids = path.join(dir, 'ids.txt');
  writeFileSync(ids, IDS.join('\n') + '\n');
  await runAll({ embeddings: emb, ids, outputDir: path.join(dir, 'out'), k, epsList: [eps] });
  return lines(path.join(dir, 'out', `kept_eps${eps}.txt`));
}

function checkRemoved(r: InMemoryDedupResult, values: ArrayLike<number>, eps: number): void {
  for (const x of r.removed) {
    assert.equal(x.id, IDS[x.row]);
    assert.equal(x.duplicateOf, IDS[x.duplicateOfRow]);
    assert.ok(x.similarity > 1 - eps, `${x.id}: similarity ${x.similarity} > ${1 - eps}`);
    const ref = dot64(values, D, x.row, x.duplicateOfRow);
    assert.ok(Math.abs(x.similarity - ref) <= 1e-12, `${x.id} ~ ${x.duplicateOf}: ${x.similarity} vs float64 ${ref}`);
  }
}

test('api: in memory (Float32Array + ids) = the file-based run; duplicates and similarities against float64', async () => {
  const eps = 0.05;
  const work = tmpFolder('api-mem-tmp');
  const progress = new Set<string>();
  const r = await dedup({ embeddings: X, ids: IDS, eps, k: 12, tmpDir: work, onProgress: (p) => progress.add(p.stage) });
  assert.deepEqual(readdirSync(work), [], 'the working folder is removed');
  assert.equal(r.n, N);
  assert.equal(r.d, D);
  assert.equal(r.k, 12);
  assert.equal(r.kept.length + r.removed.length, N);
  assert.ok(r.removed.length >= DUPS * 0.9, `the planted near-copies are found (${r.removed.length} removed)`);
  assert.ok(progress.size > 0, 'progress reported');
  const fromFiles = await fileRun('mem-files', X, eps, 12);
  assert.deepEqual([...r.kept].sort(), [...fromFiles].sort(), 'the same kept ids as the file-based run');
  assert.deepEqual(r.kept, [...r.kept].sort(), 'kept ids in input order');
  checkRemoved(r, X, eps);
  // threshold 0.95 is eps 0.05.
  const t = await dedup({ embeddings: X, ids: IDS, threshold: 0.95, k: 12 });
  assert.equal(t.eps, 0.05);
  assert.deepEqual(t.kept, r.kept);
  // dim from the ids; ids default to the row numbers.
  const rows = await dedup({ embeddings: X, dim: D, eps, k: 12 });
  assert.deepEqual(rows.kept, r.keptRows.map(String));
});

test('api: in memory from float16 (Uint16Array of half bits, and Float16Array where the runtime has it)', async () => {
  const eps = 0.05;
  const H = new Uint16Array(X.length);
  for (let i = 0; i < X.length; i++) H[i] = referenceToHalf(X[i]!);
  const values = Float64Array.from(H, referenceFromHalf);
  const r = await dedup({ embeddings: H, ids: IDS, eps, k: 12 });
  const fromFiles = await fileRun('mem-half', H, eps, 12);
  assert.deepEqual([...r.kept].sort(), [...fromFiles].sort());
  checkRemoved(r, values, eps);
  const F16 = (globalThis as { Float16Array?: new (a: ArrayLike<number>) => ArrayLike<number> & { buffer: ArrayBuffer; byteOffset: number; byteLength: number; BYTES_PER_ELEMENT: 2 } }).Float16Array;
  if (F16) {
    const r16 = await dedup({ embeddings: new F16(values), ids: IDS, eps, k: 12 });
    assert.deepEqual(r16.kept, r.kept, 'Float16Array: the same as its half bits');
  }
});

test('api: in memory, cancelled through an AbortSignal and refused on bad input; nothing left behind', async () => {
  const work = tmpFolder('api-abort');
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(dedup({ embeddings: X, ids: IDS, k: 12, signal: ac.signal, tmpDir: work }), (e: SemDedupError) => e.code === 'ERR_CANCELLED');
  const late = new AbortController();
  const p = dedup({ embeddings: X, ids: IDS, k: 12, tmpDir: work, signal: late.signal, onProgress: () => late.abort() });
  await assert.rejects(p, (e: SemDedupError) => e.code === 'ERR_CANCELLED');
  assert.deepEqual(readdirSync(work), [], 'the working folder is removed after a cancel');
  await assert.rejects(dedup({ embeddings: X, ids: IDS.slice(1), k: 12 }), /ids: 1149 ids for 1150 rows|cannot tell the dimension/);
  const twice = [...IDS];
  twice[9] = IDS[3]!;
  await assert.rejects(dedup({ embeddings: X, ids: twice, dim: D, k: 12 }), /ids\[9\] "doc-00003" repeats ids\[3\]/);
  await assert.rejects(dedup({ embeddings: X, ids: IDS, eps: 0.1, threshold: 0.9 }), /eps or threshold, not both/);
  const raw = X.map((v) => v * 2);
  await assert.rejects(dedup({ embeddings: raw, ids: IDS, k: 12, tmpDir: work }), (e: SemDedupError) => e.code === 'ERR_NUMERIC' || e.code === 'ERR_INPUT');
  const norm = await dedup({ embeddings: raw, ids: IDS, k: 12, eps: 0.05, normalize: 'always' });
  assert.ok(norm.removed.length > 0);
  assert.deepEqual(readdirSync(work), []);
});
