// The corruption matrix: every committed file of a run (and the run's inputs, and the parts of a
// planned run) × every way of damaging it (a flipped byte, truncation, deletion, two rows swapped,
// an edit that keeps the size and the mtime) × every reader; one shard of sharded embeddings too. Each combination must either refuse
// with a typed error that says what to rerun, or give the right answer: the answer of the same
// reader on the uncorrupted folder (for `run` on damaged inputs: the answer of a fresh run on
// those inputs). Never a silently different answer. The readers are the library calls the
// commands make, in this process, so that the whole matrix runs in a couple of minutes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadConfigFiles, type PartialResolved } from '../src/config.js';
import { SemDedupError } from '../src/errors.js';
import { writeIdsMemmap } from '../src/io/ids.js';
import { withLock } from '../src/lock.js';
import { dedupWanted, embeddingsSpecOf, resolveIds, runAll, runDedup, runSort } from '../src/pipeline.js';
import { extractAt, keptFractionCurve } from '../src/after/fraction.js';
import { explainRemovals } from '../src/after/explain.js';
import { writeReport } from '../src/after/report.js';
import { decontaminate } from '../src/after/decontaminate.js';
import { exactDuplicatesOfRun } from '../src/after/exact.js';
import { makePlan, planPaths, savePlan, STAGES } from '../src/plan/plan.js';
import { pendingTasks } from '../src/plan/state.js';
import { runTask } from '../src/plan/tasks.js';
import { SynthDataset } from '../tools/synth.js';
import { listFiles, tmpFolder } from './helpers.js';

const N = 3000;
const DIM = 32;
const K = 8;
const EPS = [0.01, 0.05];

type Kind = 'flip' | 'truncate' | 'delete' | 'swap' | 'edit';
const KINDS: Kind[] = ['flip', 'truncate', 'delete', 'swap', 'edit'];

// ---------------------------------------------------------------------------------------------
// Damaging a file.

interface Layout {
  /** Where the data starts (after an .npy header). */
  start: number;
  /** Bytes of one row (a line for text files). */
  row: number;
  /** Bytes of one element, and its kind, for an edit. */
  item: number;
  kind: 'i8' | 'f8' | 'f4' | 'bytes' | 'text';
}

function layoutOf(file: string, buf: Buffer): Layout {
  if (file.endsWith('.npy')) {
    const major = buf[6]!;
    const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
    const start = (major === 1 ? 10 : 12) + hlen;
    const header = buf.subarray(0, start).toString('latin1');
    const descr = /'descr':\s*'([^']+)'/.exec(header)![1]!;
    const shape = /'shape':\s*\(([^)]*)\)/.exec(header)![1]!.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
    const item = Number(descr.slice(2));
    const kind = descr.endsWith('i8') ? 'i8' : descr.endsWith('f8') ? 'f8' : descr.endsWith('f4') ? 'f4' : 'bytes';
    return { start, row: item * (shape.length > 1 ? shape[1]! : 1), item, kind };
  }
  if (file.endsWith('.f32')) return { start: 0, row: DIM * 4, item: 4, kind: 'f4' };
  if (file.endsWith('.S24')) return { start: 0, row: 24, item: 24, kind: 'bytes' };
  return { start: 0, row: 0, item: 1, kind: 'text' };
}

/** Sets the mtime of `file` back to `mtimeNs`, to the nanosecond (utimensat through touch). */
function restoreMtime(file: string, mtimeNs: bigint): void {
  const ns = String(mtimeNs % 1_000_000_000n).padStart(9, '0');
  const t = spawnSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${ns}`, file]);
  assert.equal(t.status, 0, String(t.stderr));
}

/** Damages `file` in place; false when this kind changes nothing in it (e.g. no two different rows). */
function damage(file: string, kind: Kind): boolean {
  const buf = readFileSync(file);
  const lay = layoutOf(file, buf);
  const dataLen = buf.length - lay.start;
  if (kind === 'delete') {
    unlinkSync(file);
    return true;
  }
  if (kind === 'truncate') {
    if (buf.length === 0) return false;
    writeFileSync(file, buf.subarray(0, lay.start + Math.floor(dataLen / 2)));
    return true;
  }
  if (kind === 'flip') {
    if (dataLen <= 0) return false;
    const at = lay.start + Math.floor(dataLen / 2);
    buf[at] = buf[at]! ^ 0x08;
    writeFileSync(file, buf);
    return true;
  }
  if (kind === 'swap') {
    if (lay.kind === 'text') {
      const lines = buf.toString('utf8').split('\n');
      const j = lines.findIndex((l, i) => i > 0 && l !== lines[0]);
      if (j < 0) return false;
      [lines[0], lines[j]] = [lines[j]!, lines[0]!];
      writeFileSync(file, lines.join('\n'));
      return true;
    }
    const rows = Math.floor(dataLen / lay.row);
    const a = lay.start;
    const row = (i: number) => buf.subarray(lay.start + i * lay.row, lay.start + (i + 1) * lay.row);
    let j = 1;
    while (j < rows && row(j).equals(row(0))) j++;
    if (j >= rows) return false;
    const x = Buffer.from(row(0));
    buf.copy(buf, a, lay.start + j * lay.row, lay.start + (j + 1) * lay.row);
    x.copy(buf, lay.start + j * lay.row);
    writeFileSync(file, buf);
    return true;
  }
  // edit: one plausible value changed, same size, same mtime.
  const st = statSync(file, { bigint: true });
  if (lay.kind === 'text') {
    const s = buf.toString('latin1');
    const mid = Math.floor(s.length / 2);
    let at = -1;
    for (let i = 0; i < s.length; i++) {
      const p = (mid + i) % s.length;
      if (/[0-9]/.test(s[p]!)) {
        at = p;
        break;
      }
    }
    if (at < 0) return false;
    buf[at] = 0x30 + ((buf[at]! - 0x30 + 1) % 10);
  } else {
    const items = Math.floor(dataLen / lay.item);
    if (items === 0) return false;
    const at = lay.start + Math.floor(items / 2) * lay.item;
    if (lay.kind === 'i8') {
      const v = buf.readBigInt64LE(at);
      buf.writeBigInt64LE(v > 0n ? v - 1n : v + 1n, at);
    } else if (lay.kind === 'f8') {
      const v = buf.readDoubleLE(at);
      buf.writeDoubleLE(v !== 0 ? v * 0.5 : 0.5, at);
    } else if (lay.kind === 'f4') {
      const v = buf.readFloatLE(at);
      buf.writeFloatLE(v !== 0 ? v * 0.5 : 0.5, at);
    } else {
      // an id: its first character changed
      buf[at] = buf[at] === 0x78 ? 0x79 : 0x78;
    }
  }
  writeFileSync(file, buf);
  restoreMtime(file, st.mtimeNs);
  return true;
}

// ---------------------------------------------------------------------------------------------
// The run and its readers.

interface Fixture {
  root: string;
  emb: string;
  ids: string;
  ref: string;
  base: string;
}

/** A folder in memory where there is one (/dev/shm): the matrix syncs thousands of small files. */
function scratchRoot(): string {
  try {
    if (statSync('/dev/shm').isDirectory()) return mkdtempSync(path.join('/dev/shm', 'semdedup-corrupt-'));
  } catch {
    // no /dev/shm: the system's temporary folder
  }
  return tmpFolder('corrupt');
}

function makeFixture(): Fixture {
  const root = scratchRoot();
  const X = new SynthDataset({ n: N, dim: DIM, clusters: K, seed: 21, dupFraction: 0.2 }).generate();
  // A few exact copies, so that the exact-duplicates file is not empty.
  for (let i = 0; i < 20; i++) X.copyWithin((100 + i) * DIM, i * DIM, (i + 1) * DIM);
  mkdirSync(path.join(root, 'data'));
  const emb = path.join(root, 'data', 'embs.f32');
  writeFileSync(emb, Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  const ids = path.join(root, 'data', 'paths.S24');
  writeIdsMemmap(ids, Array.from({ length: N }, (_, i) => `img_${String(i).padStart(6, '0')}.jpg`), 24);
  const ref = path.join(root, 'data', 'ref.f32');
  writeFileSync(ref, Buffer.from(X.buffer, X.byteOffset + 500 * DIM * 4, 80 * DIM * 4));
  return { root, emb, ids, ref, base: path.join(root, 'base') };
}

function configOf(f: Fixture, out: string): PartialResolved {
  return loadConfigFiles([], {
    embeddings: f.emb, dim: String(DIM), ids: f.ids, ids_dtype: 'S24', output_dir: out, k: String(K), niter: '5', eps_list: EPS.join(','),
    exact_duplicates: 'true', device: 'cpu', threads: '2',
  });
}

const sha = (...parts: (ArrayBufferView | string)[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  return h.digest('hex');
};

/** The files of a run's folder that do not depend on timing or on the folder's path. */
function folderDigest(dir: string): string {
  const files = listFiles(dir).filter((f) => !/(^|\/)(manifest\.json|lock|plan\.lock|plan\.json|summary\.json)$/.test(f) && !f.startsWith('semdedup/plan/'));
  return sha(files.map((f) => `${f}:${sha(readFileSync(path.join(dir, f)))}`).join('\n'));
}

type Reader = (cfg: PartialResolved, out: string, scratch: string) => Promise<string>;

const opts = { threads: 2 };

const READERS: Record<string, Reader> = {
  sort: async (cfg) => {
    const r = await runSort(cfg, opts);
    return sha(r.order, r.offsets, r.distance);
  },
  dedup: async (cfg) => {
    const r = await runDedup(cfg, opts);
    return sha(r.keepOrder, r.M, r.Mrow, JSON.stringify(r.summary));
  },
  extract: async (cfg, out, scratch) => {
    const ids = resolveIds(cfg, out, undefined, { verify: true });
    const file = path.join(scratch, 'kept.txt');
    const r = await withLock(out, () =>
      extractAt({ ...opts, outputDir: out, embeddings: embeddingsSpecOf(cfg), eps: 0.03, output: file, ...(ids ? { ids } : {}), want: dedupWanted(cfg) }));
    return sha(readFileSync(file), JSON.stringify(r.summary));
  },
  curve: async (_cfg, out) => {
    const r = await keptFractionCurve({ outputDir: out, from: 0.001, to: 0.3, step: 0.001 });
    return sha(JSON.stringify(r));
  },
  explain: async (cfg, out, scratch) => {
    const ids = resolveIds(cfg, out, undefined, { verify: true });
    const file = path.join(scratch, 'why.csv');
    await withLock(out, () => explainRemovals({ ...opts, outputDir: out, embeddings: embeddingsSpecOf(cfg), eps: 0.01, output: file, ...(ids ? { ids } : {}), want: dedupWanted(cfg) }));
    return sha(readFileSync(file));
  },
  report: async (cfg, out, scratch) => {
    const ids = resolveIds(cfg, out, undefined, { verify: true });
    const file = path.join(scratch, 'r.html');
    await withLock(out, () => writeReport({ ...opts, outputDir: out, embeddings: embeddingsSpecOf(cfg), output: file, ...(ids ? { ids } : {}), want: dedupWanted(cfg) }));
    return sha(readFileSync(file, 'utf8').split(out).join('<out>'));
  },
  decontaminate: async (cfg, out, scratch) => {
    const ids = resolveIds(cfg, out, undefined, { verify: true });
    const kept = path.join(scratch, 'dc.txt');
    const matches = path.join(scratch, 'dc.csv');
    const r = await withLock(out, () => decontaminate({
      ...opts, embeddings: embeddingsSpecOf(cfg), reference: { path: fx.ref, format: 'memmap', dim: DIM }, eps: 0.05, mode: 'within-clusters', outputDir: out,
      ...(ids ? { ids } : {}), output: kept, matches, recallSample: 300,
    }));
    return sha(readFileSync(kept), readFileSync(matches), JSON.stringify(r.recall));
  },
  'exact-duplicates': async (cfg, out) => {
    await withLock(out, () => exactDuplicatesOfRun({ ...opts, outputDir: out, embeddings: embeddingsSpecOf(cfg), want: dedupWanted(cfg) }));
    return sha(readFileSync(path.join(out, 'semdedup', 'exact_duplicates.npy')));
  },
  run: async (cfg, out) => {
    await runAll(cfg, opts);
    return folderDigest(out);
  },
};

const COMMITTED = [
  'kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy',
  'semdedup/cluster_order.npy', 'semdedup/cluster_offsets.npy', 'semdedup/cluster_distance.npy',
  'semdedup/keep_order.npy', 'semdedup/keep_index.npy', 'semdedup/M.npy', 'semdedup/M_row.npy',
  `semdedup/kept_rows_eps${EPS[0]}.npy`, `kept_eps${EPS[0]}.txt`, 'semdedup/summary.json', 'semdedup/exact_duplicates.npy',
  'semdedup/manifest.json',
];

let fx: Fixture;

type Outcome = { answer: string } | { refused: string };

async function attempt(fn: () => Promise<string>): Promise<Outcome> {
  try {
    return { answer: await fn() };
  } catch (e) {
    if (!(e instanceof SemDedupError)) return { refused: `UNTYPED ${(e as Error)?.stack ?? String(e)}` };
    return { refused: e.message };
  }
}

/** A refusal that says what to rerun (or restore). */
const SAYS_WHAT_TO_RERUN = /rerun|semdedup (run|cluster|sort|dedup|exact-duplicates)\b|restore|give the run's/;

/** Every combination that broke the rule, reported together at the end. */
const failures: string[] = [];

/** Judges one combination: refused saying what to rerun (for damaged inputs × run: any typed refusal naming the input), or the expected answer. */
function judge(what: string, got: Outcome, expected: Outcome, opts2: { inputRefusal?: RegExp } = {}): 'refused' | 'right' | 'wrong' {
  if ('refused' in got) {
    if ('refused' in expected) return 'refused';
    const ok = SAYS_WHAT_TO_RERUN.test(got.refused) || (opts2.inputRefusal?.test(got.refused) ?? false);
    if (!ok) failures.push(`${what}: refused without saying what to rerun: ${got.refused}`);
    return ok ? 'refused' : 'wrong';
  }
  if ('refused' in expected) {
    failures.push(`${what}: answered, but the uncorrupted reader refuses: ${expected.refused}`);
    return 'wrong';
  }
  if (got.answer !== expected.answer) {
    failures.push(`${what}: a different answer than the uncorrupted run's (silently wrong)`);
    return 'wrong';
  }
  return 'right';
}

function assertNoFailures(): void {
  assert.deepEqual(failures.slice(0, 60), [], `${failures.length} combinations broke the rule`);
}

type Tally = { refused: number; right: number; wrong: number; unchanged: number };

/** Each input file damaged in place (every kind), each reader run on a copy of the folder, the input restored after each. */
async function damageInputs(inputs: string[], tally: Tally, expected: Record<string, Outcome>, scratch: string, copyOf: (tag: string) => string): Promise<void> {
  for (const input of inputs)
    for (const kind of KINDS) {
      const good = readFileSync(input);
      // What a fresh run makes of the damaged input (the right answer of `run` on it).
      if (!damage(input, kind)) {
        tally.unchanged++;
        continue;
      }
      const fresh = path.join(fx.root, 'fresh');
      rmSync(fresh, { recursive: true, force: true });
      const freshRun = await attempt(async () => {
        await runAll(configOf(fx, fresh), opts);
        return folderDigest(fresh);
      });
      writeFileSync(input, good);
      for (const [name, read] of Object.entries(READERS)) {
        const w = copyOf('case');
        damage(input, kind);
        try {
          const got = await attempt(() => read(configOf(fx, w), w, scratch));
          const what = `${path.basename(input)} (${kind}) × ${name}`;
          if (name === 'run') tally[judge(what, got, freshRun, { inputRefusal: new RegExp(path.basename(input).replace('.', '\\.')) })]++;
          else tally[judge(what, got, expected[name]!)]++;
        } finally {
          writeFileSync(input, good);
        }
      }
    }
}

/**
 * The right answers: each reader on an uncorrupted copy of the run folder; with a scratch folder,
 * the copier the damage loops use, and an empty tally.
 */
async function rightAnswers(f: Fixture) {
  const scratch = path.join(f.root, 'scratch');
  mkdirSync(scratch);
  const copyOf = (tag: string) => {
    const w = path.join(f.root, tag);
    rmSync(w, { recursive: true, force: true });
    cpSync(f.base, w, { recursive: true });
    return w;
  };
  const expected: Record<string, Outcome> = {};
  for (const [name, read] of Object.entries(READERS)) {
    const w = copyOf('expect');
    expected[name] = await attempt(() => read(configOf(f, w), w, scratch));
    assert.ok('answer' in expected[name]!, `${name} answers on the uncorrupted folder: ${JSON.stringify(expected[name])}`);
  }
  return { scratch, copyOf, expected, tally: { refused: 0, right: 0, wrong: 0, unchanged: 0 } };
}

test('corruption matrix: every committed file and input × every damage × every reader: refused with what to rerun, or right', async () => {
  fx = makeFixture();
  try {
    await runAll(configOf(fx, fx.base), opts);
    for (const f of COMMITTED) assert.ok(existsSync(path.join(fx.base, f)), `the run wrote ${f}`);
    const { scratch, copyOf, expected, tally } = await rightAnswers(fx);
    // Committed files of the folder.
    for (const file of COMMITTED)
      for (const kind of KINDS) {
        for (const [name, read] of Object.entries(READERS)) {
          const w = copyOf('case');
          if (!damage(path.join(w, file), kind)) {
            tally.unchanged++;
            continue;
          }
          const got = await attempt(() => read(configOf(fx, w), w, scratch));
          tally[judge(`${file} (${kind}) × ${name}`, got, expected[name]!)]++;
        }
      }
    // The run's inputs, damaged in place and restored after each reader.
    await damageInputs([fx.emb, fx.ids], tally, expected, scratch, copyOf);
    process.stderr.write(`corruption matrix: ${JSON.stringify(tally)}\n`);
    assertNoFailures();
    const total = tally.refused + tally.right;
    assert.ok(tally.refused > 100 && tally.right > 100, `both outcomes occur: ${JSON.stringify(tally)}`);
    assert.ok(total >= (COMMITTED.length + 2) * KINDS.length * Object.keys(READERS).length - 9 * 10, `nearly every combination was damaged: ${JSON.stringify(tally)}`);
    process.stderr.write(`corruption matrix: ${total} combinations (${tally.refused} refused, ${tally.right} right; ${tally.unchanged} left unchanged by the damage)\n`);
  } finally {
    rmSync(fx.root, { recursive: true, force: true });
  }
});

test('corruption matrix, sharded embeddings: one shard × every damage × every reader: refused with what to rerun, or right', async () => {
  fx = makeFixture();
  try {
    // The same rows as three raw float32 shards in a folder (the run reads them as one dataset).
    const shards = path.join(fx.root, 'data', 'shards');
    mkdirSync(shards);
    const all = readFileSync(fx.emb);
    const cuts = [0, 1100, 2200, N];
    for (let i = 0; i < 3; i++) writeFileSync(path.join(shards, `part_${i}.f32`), all.subarray(cuts[i]! * DIM * 4, cuts[i + 1]! * DIM * 4));
    fx = { ...fx, emb: shards };
    await runAll(configOf(fx, fx.base), opts);
    const { scratch, copyOf, expected, tally } = await rightAnswers(fx);
    await damageInputs([path.join(shards, 'part_1.f32')], tally, expected, scratch, copyOf);
    process.stderr.write(`corruption matrix, one shard: ${JSON.stringify(tally)}\n`);
    assertNoFailures();
    assert.equal(tally.unchanged, 0);
    assert.ok(tally.refused >= KINDS.length * (Object.keys(READERS).length - 1), `every reader but run refuses every damaged shard: ${JSON.stringify(tally)}`);
  } finally {
    rmSync(fx.root, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Planned runs: the parts, the task records and the plan, each damaged, then the planned run
// rerun (its executor's loop, in this process): refused with what to rerun, or the same files as
// the undamaged planned run.

async function plannedRun(cfg: PartialResolved): Promise<void> {
  const { plan } = savePlan(makePlan(cfg, { tasks: 2 }));
  for (const stage of STAGES) for (const i of pendingTasks(plan, stage)) await runTask(plan, stage, i, { threads: 2 });
}

test('corruption matrix, planned runs: every kind of part, task record and the plan × every damage: refused with what to rerun, or right', async () => {
  const f = makeFixture();
  try {
    const cfgOf = (out: string) => loadConfigFiles([], {
      embeddings: f.emb, dim: String(DIM), ids: f.ids, ids_dtype: 'S24', output_dir: out, k: String(K), niter: '5', eps_list: EPS.join(','), device: 'cpu', threads: '2',
    });
    const base = path.join(f.root, 'planned');
    await plannedRun(cfgOf(base));
    const expected = folderDigest(base);
    const single = path.join(f.root, 'single');
    await runAll(cfgOf(single), opts);
    // The planned run's files are the single run's (the rule every rerun is held to).
    assert.equal(expected, folderDigest(single));
    // One file of each kind: every kind of part (the last task's), every stage's task record, the plan.
    const kinds = new Map<string, string>();
    for (const rel of listFiles(base)) {
      const part = /^semdedup\/plan\/parts\/(\w+)\/(\w+)\.\d+\.npy$/.exec(rel);
      const state = /^semdedup\/plan\/state\/(\w+)\.\d+\.json$/.exec(rel);
      if (part) kinds.set(`${part[1]}/${part[2]}`, rel);
      else if (state) kinds.set(`state/${state[1]}`, rel);
    }
    const files = [...kinds.values(), path.join('semdedup', 'plan.json')];
    // parts: train 3 (the sample rows' kept assignment), assign 3, group 3, dedup 2; 5 task records; the plan
    assert.equal(files.length, 3 + 3 + 3 + 2 + 5 + 1, `every kind of part and record: ${files.join(', ')}`);
    const tally = { refused: 0, right: 0, wrong: 0, unchanged: 0 };
    // A case that ends right leaves the folder complete and right for the next one; after a
    // refusal the folder is made again.
    const w = path.join(f.root, 'case');
    let intact = false;
    for (const file of files)
      for (const kind of KINDS) {
        // (A rerun whose train task found its kept assignment damaged reuses the committed
        // centroids, which carry none: the assign tasks then search every row. The folder is made
        // again to damage that kind once more.)
        if (!intact || !existsSync(path.join(w, file))) {
          rmSync(w, { recursive: true, force: true });
          await plannedRun(cfgOf(w));
          assert.equal(folderDigest(w), expected);
        }
        intact = false;
        if (!damage(path.join(w, file), kind)) {
          tally.unchanged++;
          continue;
        }
        // The extract task runs again too (as after a deleted final file), so that it reads every part.
        rmSync(path.join(w, 'semdedup', 'M.npy'), { force: true });
        const got = await attempt(async () => {
          await plannedRun(cfgOf(w));
          return folderDigest(w);
        });
        const verdict = judge(`${file} (${kind}) × planned rerun`, got, { answer: expected });
        tally[verdict]++;
        intact = verdict === 'right';
      }
    process.stderr.write(`planned-run corruption matrix: ${JSON.stringify(tally)}\n`);
    assertNoFailures();
    assert.ok(tally.right > 0, JSON.stringify(tally));
    process.stderr.write(`planned-run corruption matrix: ${tally.refused + tally.right} combinations (${tally.refused} refused, ${tally.right} right; ${tally.unchanged} unchanged)\n`);
  } finally {
    rmSync(f.root, { recursive: true, force: true });
  }
});
