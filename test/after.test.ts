// Working from a finished run, against independent float64 references: extract at an eps that
// was not recorded (re-checked), by a target fraction, the curve, the explanation of every
// removal, exact duplicates, and decontamination (exact and within clusters) against a float64
// brute force; and the same through the command line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { SynthDataset } from '../tools/synth.js';
import { computeCentroids } from '../src/steps/cluster.js';
import { assignAndSortClusters } from '../src/steps/sort.js';
import { semdedup } from '../src/steps/dedup.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { idsFromStrings } from '../src/io/ids.js';
import { outputs } from '../src/layout.js';
import type { EmbeddingsSpec } from '../src/embeddings.js';
import {
  chooseEpsForFraction, decontaminate, explainId, explainRemovals, extractAt, findExactDuplicates, keptFractionCurve, recheckEps,
} from '../src/index.js';
import { dot64Lanes, refMaxSimExact } from './reference.js';
import { runCli, withSpec } from './helpers.js';
import { openEmbeddings } from '../src/embeddings.js';

const N = 20_000;
const D = 32;
const K = 20;
const EPS = [0.01, 0.05];

const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 11, dupFraction: 0.2, exactFraction: 0.3, nearCos: [0.95, 0.9995] });
const X = ds.generate();
const ROOT = mkdtempSync(join(tmpdir(), 'semdedup-after-'));
process.on('exit', () => rmSync(ROOT, { recursive: true, force: true }));
const EMB = join(ROOT, 'emb.f32');
writeFileSync(EMB, new Uint8Array(X.buffer, X.byteOffset, X.byteLength));
const SPEC: EmbeddingsSpec = { path: EMB, format: 'memmap', count: N, dim: D };
const ID_LIST = Array.from({ length: N }, (_, i) => `item,${i}"`); // ids that need CSV quoting
const IDS = idsFromStrings(ID_LIST);
const OUT = join(ROOT, 'out');

function dot64(a: number, b: number, A: Float32Array = X, B: Float32Array = X): number {
  let s = 0;
  for (let t = 0; t < D; t++) s += A[a * D + t]! * B[b * D + t]!;
  return s;
}

interface Ref {
  keepOrder: BigInt64Array;
  offsets: BigInt64Array;
  /** float64 M by the engine's definition (fixed-order dot products) and its earliest arg row (-1 on the clamp), per keep-order position. */
  M: Float64Array;
  argRow: Int32Array;
}

let prepared: Promise<Ref> | undefined;
function prepare(): Promise<Ref> {
  prepared ??= (async () => {
    await withSpec(computeCentroids, { embeddings: SPEC, outputDir: OUT, k: K, niter: 10, seed: 1234, spherical: true, device: 'cpu' });
    await withSpec(assignAndSortClusters, { outputDir: OUT, simMetric: 'cosine', keepHard: true, spherical: true, embeddings: SPEC });
    await withSpec(semdedup, { embeddings: SPEC, outputDir: OUT, epsList: EPS, device: 'cpu' });
    const keepOrder = readNpy(outputs.keepOrder(OUT)).data as BigInt64Array;
    const offsets = readNpy(outputs.offsets(OUT)).data as BigInt64Array;
    const M = new Float64Array(N);
    const argRow = new Int32Array(N).fill(-1);
    for (let c = 0; c < K; c++) {
      const b = Number(offsets[c]!);
      const rows = Array.from(keepOrder.subarray(b, Number(offsets[c + 1]!)), Number);
      const r = refMaxSimExact(X, D, rows);
      M.set(r.M, b);
      for (let j = 0; j < rows.length; j++) argRow[b + j] = r.arg[j]! >= 0 ? rows[r.arg[j]!]! : -1;
    }
    return { keepOrder, offsets, M, argRow };
  })();
  return prepared;
}

/** Kept rows in extraction order by the float64 decisions at eps. */
function refKept(ref: Ref, eps: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < N; p++) if (!(ref.M[p]! > 1 - eps)) out.push(Number(ref.keepOrder[p]!));
  return out;
}

test('extract at an eps not in eps_list: the members near it are re-checked and every decision equals float64', async () => {
  const ref = await prepare();
  for (const eps of [0.02, 0.037, 0.003]) {
    const r = await extractAt({ outputDir: OUT, eps, embeddings: SPEC });
    assert.deepEqual(Array.from(r.keptRows, Number), refKept(ref, eps), `eps ${eps}`);
  }
  // A recorded eps needs no embeddings and no re-check.
  const rec = await extractAt({ outputDir: OUT, eps: 0.05 });
  assert.equal(rec.rechecked, 0);
  assert.deepEqual(Array.from(rec.keptRows, Number), refKept(ref, 0.05));
  // An unrecorded eps without the embeddings is refused with a typed error.
  await assert.rejects(extractAt({ outputDir: OUT, eps: 0.02 }), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG' && /not among the thresholds recorded/.test(e.message));
  // The re-check itself: M within the margin of the new threshold is the float64 value.
  const rc = await recheckEps({ outputDir: OUT, embeddings: SPEC, eps: [0.02] });
  let near = 0;
  for (let p = 0; p < N; p++)
    if (Math.abs(ref.M[p]! - 0.98) < 1e-5) {
      near++;
      assert.equal(rc.M[p], ref.M[p], `position ${p}`);
    }
  assert.ok(rc.rechecked >= near);
});

test('--keep-fraction: the chosen eps lands within 1/N of the target and its kept ids equal float64 at that eps', async () => {
  const ref = await prepare();
  for (const f of [0.7, 0.85, 0.95]) {
    const r = await extractAt({ outputDir: OUT, keepFraction: f, embeddings: SPEC });
    const kept = Array.from(r.keptRows, Number);
    assert.deepEqual(kept, refKept(ref, r.eps), `keep fraction ${f}: eps ${r.eps}`);
    // The float64 kept counts of all eps: the closest reachable count to f·N.
    const sorted = Float64Array.from(ref.M).sort();
    const reachable = new Set<number>();
    for (let i = 0; i <= N; i++) if (i === N || i === 0 || sorted[i]! !== sorted[i - 1]!) reachable.add(i);
    let bestDist = Infinity;
    for (const c of reachable) bestDist = Math.min(bestDist, Math.abs(c - f * N));
    assert.ok(Math.abs(kept.length - f * N) <= bestDist + 1e-9, `kept ${kept.length}, target ${f * N}, closest reachable at distance ${bestDist}`);
    if (bestDist <= 1) assert.ok(Math.abs(kept.length / N - f) <= 1 / N);
  }
  const rr = await extractAt({ outputDir: OUT, removeFraction: 0.25, embeddings: SPEC });
  assert.ok(Math.abs(rr.summary.removed - 0.25 * N) <= 1, `removed ${rr.summary.removed}`);
});

test('chooseEpsForFraction: ties make counts unreachable; the closest count wins, the smaller eps on a tie', () => {
  const M = Float64Array.of(0, 0, 0.5, 0.5, 0.5, 0.9);
  // Reachable kept counts: 2 (t < 0.5), 5 (0.5 <= t < 0.9), 6 (t >= 0.9).
  const a = chooseEpsForFraction(M, 3 / 6);
  assert.equal(a.kept, 2);
  assert.ok(a.eps > 0.5 && a.eps < 1);
  const b = chooseEpsForFraction(M, 3.5 / 6); // 2 and 5 are 1.5 away: the smaller eps (5 kept)
  assert.equal(b.kept, 5);
  assert.ok(b.eps > 0.1 && b.eps <= 0.5);
  const c = chooseEpsForFraction(M, 1);
  assert.equal(c.kept, 6);
  assert.ok(c.eps > 0 && c.eps <= 0.1);
  assert.equal(String(c.eps).length <= 4, true, `a short decimal: ${c.eps}`);
});

test('curve: kept fraction against eps from the stored M, monotone, equal to the dedup summary at the recorded eps', async () => {
  const ref = await prepare();
  const r = await keptFractionCurve({ outputDir: OUT, from: 0.001, to: 0.2, step: 0.001 });
  assert.equal(r.points.length, 200);
  for (let i = 1; i < r.points.length; i++) assert.ok(r.points[i]!.kept <= r.points[i - 1]!.kept);
  for (const eps of EPS) {
    const p = r.points.find((q) => q.eps === eps)!;
    assert.equal(p.kept, refKept(ref, eps).length, `eps ${eps}`);
  }
});

function parseCsvLine(line: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = '';
      i++;
      for (;;) {
        if (line[i] === '"' && line[i + 1] === '"') {
          s += '"';
          i += 2;
        } else if (line[i] === '"') {
          i++;
          break;
        } else s += line[i++];
      }
      out.push(s);
      i++;
    } else {
      const j = line.indexOf(',', i);
      const e = j < 0 ? line.length : j;
      out.push(line.slice(i, e));
      i = e + 1;
    }
  }
  return out;
}

test('explain agrees with a float64 brute force on every removed id (CSV and JSON Lines), --id and --near', async () => {
  const ref = await prepare();
  for (const eps of [0.05, 0.02]) {
    const csv = join(ROOT, `explain-${eps}.csv`);
    const r = await explainRemovals({ outputDir: OUT, eps, embeddings: SPEC, ids: IDS, output: csv });
    const lines = readFileSync(csv, 'utf8').trimEnd().split('\n');
    assert.equal(lines[0], 'id,row,cluster,position,removed,by_id,by_row,similarity,distance_to_threshold');
    const expectedRemoved = new Set<number>();
    const posOf = new Map<number, number>();
    for (let p = 0; p < N; p++) {
      posOf.set(Number(ref.keepOrder[p]!), p);
      if (ref.M[p]! > 1 - eps) expectedRemoved.add(Number(ref.keepOrder[p]!));
    }
    assert.equal(lines.length - 1, expectedRemoved.size);
    assert.equal(r.removed, expectedRemoved.size);
    for (const line of lines.slice(1)) {
      const [id, rowS, clusterS, , removed, byId, byRowS, simS] = parseCsvLine(line);
      const row = Number(rowS);
      const by = Number(byRowS);
      assert.equal(id, ID_LIST[row]);
      assert.equal(byId, ID_LIST[by]);
      assert.equal(removed, 'true');
      assert.ok(expectedRemoved.has(row), `row ${row} is removed by float64 too`);
      const p = posOf.get(row)!;
      const c = Number(clusterS);
      assert.ok(p >= Number(ref.offsets[c]!) && p < Number(ref.offsets[c + 1]!), 'the cluster holds the row');
      const q = posOf.get(by)!;
      assert.ok(q >= Number(ref.offsets[c]!) && q < p, 'the remover is an earlier member of the same cluster');
      const sim = Number(simS);
      assert.ok(Math.abs(sim - ref.M[p]!) <= 1e-5, `similarity ${sim} vs float64 M ${ref.M[p]}`);
      assert.ok(Math.abs(dot64(row, by) - ref.M[p]!) <= 1e-5, `the remover reaches M: ${dot64(row, by)} vs ${ref.M[p]}`);
    }
    const jl = join(ROOT, `explain-${eps}.jsonl`);
    await explainRemovals({ outputDir: OUT, eps, embeddings: SPEC, ids: IDS, output: jl });
    const objs = readFileSync(jl, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { id: string; row: number; by_row: number; similarity: number });
    assert.equal(objs.length, expectedRemoved.size);
    assert.equal(objs[0]!.id, ID_LIST[objs[0]!.row]);
  }
  // --near: exactly the members whose (re-checked) M lies within the distance of the threshold.
  const eps = 0.05;
  const delta = 0.01;
  const nearFile = join(ROOT, 'near.csv');
  const nr = await explainRemovals({ outputDir: OUT, eps, embeddings: SPEC, output: nearFile, near: delta });
  let expectNear = 0;
  for (let p = 0; p < N; p++) if (Math.abs(ref.M[p]! - (1 - eps)) <= delta) expectNear++;
  assert.ok(Math.abs(nr.lines - expectNear) <= 2, `${nr.lines} near lines, float64 ${expectNear}`);
  for (const line of readFileSync(nearFile, 'utf8').trimEnd().split('\n').slice(1)) {
    const f = parseCsvLine(line);
    assert.ok(Math.abs(Number(f[8])) <= delta);
  }
  // --id: one removed and one kept id.
  let removedPos = -1;
  let keptPos = -1;
  for (let p = 0; p < N && (removedPos < 0 || keptPos < 0); p++) {
    if (ref.M[p]! > 1 - eps && removedPos < 0) removedPos = p;
    if (ref.M[p]! < 1 - eps - 0.01 && ref.argRow[p]! >= 0 && keptPos < 0) keptPos = p;
  }
  const rid = ID_LIST[Number(ref.keepOrder[removedPos]!)]!;
  const a = await explainId({ outputDir: OUT, eps, id: rid, ids: IDS });
  assert.equal(a.removed, true);
  assert.ok(Math.abs(dot64(a.row, a.byRow!) - ref.M[removedPos]!) <= 1e-5);
  const kid = ID_LIST[Number(ref.keepOrder[keptPos]!)]!;
  const b = await explainId({ outputDir: OUT, eps, id: kid, ids: IDS });
  assert.equal(b.removed, false);
  assert.ok(Math.abs(b.similarity - ref.M[keptPos]!) <= 1e-5);
  await assert.rejects(explainId({ outputDir: OUT, eps, id: 'no such id', ids: IDS }), (e: Error & { code?: string }) => e.code === 'ERR_INPUT');
});

test('exact duplicates: every set of byte-identical rows found (against grouping by the bytes), the first in keep order kept, M unchanged', async () => {
  const ref = await prepare();
  const r = await (async () => { const e = openEmbeddings(SPEC); try { return await findExactDuplicates({ embeddings: e, order: ref.keepOrder, outputDir: OUT }); } finally { e.close(); } })();
  const bytes = new Uint8Array(X.buffer, X.byteOffset, X.byteLength);
  const firstByContent = new Map<string, number>();
  let copies = 0;
  const expected = new BigInt64Array(N).fill(-1n);
  for (let p = 0; p < N; p++) {
    const row = Number(ref.keepOrder[p]!);
    const key = Buffer.from(bytes.subarray(row * D * 4, (row + 1) * D * 4)).toString('base64');
    const f = firstByContent.get(key);
    if (f === undefined) firstByContent.set(key, row);
    else {
      expected[row] = BigInt(f);
      copies++;
    }
  }
  assert.ok(copies > 0, 'the dataset has exact copies');
  assert.equal(r.copies, copies);
  assert.deepEqual(r.firstOf, expected);
  const pairs = readNpy(r.output!);
  assert.deepEqual(pairs.header.shape, [copies, 2]);
  // Every exact copy is removed by the semantic step at every eps (M = 1 up to rounding).
  const M = readNpy(outputs.M(OUT)).data as Float64Array;
  const pos = new Map<number, number>();
  for (let p = 0; p < N; p++) pos.set(Number(ref.keepOrder[p]!), p);
  for (let row = 0; row < N; row++) if (expected[row]! >= 0n) assert.ok(M[pos.get(row)!]! > 1 - 1e-5, `copy ${row}: M ${M[pos.get(row)!]}`);
  // The dedup step with the pre-pass gives the same M, bit for bit.
  const dir2 = join(ROOT, 'out-exact');
  await withSpec(computeCentroids, { embeddings: SPEC, outputDir: dir2, k: K, niter: 10, seed: 1234, spherical: true, device: 'cpu', centroids: outputs.centroids(OUT) });
  await withSpec(assignAndSortClusters, { outputDir: dir2, simMetric: 'cosine', keepHard: true, spherical: true, embeddings: SPEC });
  const lines: string[] = [];
  const d2 = await withSpec(semdedup, { embeddings: SPEC, outputDir: dir2, epsList: EPS, device: 'cpu', exactDuplicates: true, log: (l) => lines.push(l) });
  assert.deepEqual(d2.M, M);
  assert.ok(lines.some((l) => l.includes(`${copies} rows are byte-identical`)), lines.join('\n'));
});

// A reference set: 600 near copies of dataset rows (cosine 0.9 to 0.9999), 4,400 rows of an
// unrelated dataset.
const NR = 5000;
function referenceSet(): Float32Array {
  const other = new SynthDataset({ n: NR, dim: D, clusters: K, seed: 99, dupFraction: 0, exactFraction: 0 }).generate();
  const R = Float32Array.from(other);
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let i = 0; i < 600; i++) {
    const src = Math.floor(rnd() * N);
    const mix = 0.02 + 0.4 * rnd();
    const v = new Float64Array(D);
    let nn = 0;
    for (let t = 0; t < D; t++) {
      v[t] = X[src * D + t]! + mix * (other[i * D + t]! - X[src * D + t]!);
      nn += v[t]! * v[t]!;
    }
    for (let t = 0; t < D; t++) R[(NR - 1 - i) * D + t] = v[t]! / Math.sqrt(nn);
  }
  return R;
}

let refWritten: { R: Float32Array; path: string } | undefined;
function referenceFile(): { R: Float32Array; path: string } {
  if (!refWritten) {
    const R = referenceSet();
    const path = join(ROOT, 'reference.npy');
    writeNpy(path, R, { shape: [NR, D] });
    refWritten = { R, path };
  }
  return refWritten;
}

test('decontaminate: exact mode equals a float64 brute force on 20k x 5k; within-clusters is a subset with its recall reported', async () => {
  await prepare();
  const { R, path: refPath } = referenceFile();
  // float64 brute force of the engine's definition (the fixed-order float64 dot product; the
  // earliest reference row on ties)
  const best = new Float64Array(N).fill(-Infinity);
  const bestRef = new Int32Array(N).fill(-1);
  for (let i = 0; i < N; i++)
    for (let j = 0; j < NR; j++) {
      const s = dot64Lanes(X, i * D, R, j * D, D);
      if (s > best[i]!) {
        best[i] = s;
        bestRef[i] = j;
      }
    }
  for (const eps of [0.05, 0.02]) {
    let progress = 0;
    const r = await decontaminate({ embeddings: SPEC, reference: { path: refPath }, eps, outputDir: OUT, onProgress: () => progress++ });
    const expectRemoved: number[] = [];
    for (let i = 0; i < N; i++) if (best[i]! > 1 - eps) expectRemoved.push(i);
    assert.ok(expectRemoved.length > 100, `${expectRemoved.length} contaminated rows`);
    assert.deepEqual(Array.from(r.removedRows, Number), expectRemoved, `eps ${eps}`);
    assert.equal(r.kept + r.removed, N);
    assert.ok(progress > 0, 'progress reported');
    for (let q = 0; q < r.removed; q++) {
      const row = Number(r.removedRows[q]!);
      assert.ok(Object.is(r.similarity[q], best[row]), `row ${row}: similarity ${r.similarity[q]} vs ${best[row]}`);
      assert.equal(Number(r.matchedReference[q]!), bestRef[row], `row ${row}: the matched reference row`);
    }
    const w = await decontaminate({ embeddings: SPEC, reference: { path: refPath }, eps, outputDir: OUT, mode: 'within-clusters', recallSample: N });
    const exactSet = new Set(expectRemoved);
    let found = 0;
    for (const row of w.removedRows) {
      assert.ok(exactSet.has(Number(row)), 'within-clusters removes only what the exact mode removes');
      found++;
    }
    assert.equal(w.recall!.exactRemoved, expectRemoved.length);
    assert.equal(w.recall!.found, found);
    assert.ok(w.recall!.recall > 0.5, `recall ${w.recall!.recall}`);
  }
  await assert.rejects(
    decontaminate({ embeddings: SPEC, reference: { path: EMB, format: 'memmap', dim: 16 }, eps: 0.05, outputDir: OUT }),
    (e: Error & { code?: string }) => e.code === 'ERR_INPUT' && /dimensions/.test(e.message),
  );
});

test('cli: extract --keep-fraction, curve --json, explain, decontaminate, report', async () => {
  const ref = await prepare();
  const cfg = join(ROOT, 'run.yaml');
  writeFileSync(cfg, `embeddings: ${EMB}\nembeddings_format: memmap\ndim: ${D}\noutput_dir: ${OUT}\nk: ${K}\nspherical: true\neps_list: [0.01, 0.05]\n`);
  const kept = join(ROOT, 'kept70.txt');
  const e = runCli(['extract', '-c', cfg, '--keep-fraction', '0.7', '-o', kept], ROOT);
  assert.equal(e.code, 0, e.stderr);
  const m = /^eps ([0-9.e-]+) \(chosen for kept fraction 0\.7/.exec(e.stdout);
  assert.ok(m, e.stdout);
  const eps = Number(m[1]);
  assert.deepEqual(readFileSync(kept, 'utf8').trimEnd().split('\n').map(Number), refKept(ref, eps));
  const both = runCli(['extract', '-c', cfg, '--keep-fraction', '0.7', '--eps', '0.05'], ROOT);
  assert.equal(both.code, 2, 'two ways of choosing eps are a config error');
  const c = runCli(['curve', '-c', cfg, '--json', '--to', '0.1'], ROOT);
  assert.equal(c.code, 0, c.stderr);
  const curve = JSON.parse(c.stdout) as { n: number; points: { eps: number; kept: number }[] };
  assert.equal(curve.n, N);
  assert.equal(curve.points.length, 100);
  const x = runCli(['explain', '-c', cfg, '--eps', '0.05', '-o', join(ROOT, 'x.jsonl')], ROOT);
  assert.equal(x.code, 0, x.stderr);
  assert.equal(readFileSync(join(ROOT, 'x.jsonl'), 'utf8').trimEnd().split('\n').length, refKept(ref, 0.05).length === N ? 0 : N - refKept(ref, 0.05).length);
  const refPath = referenceFile().path;
  const d = runCli(['decontaminate', '-c', cfg, '--reference', refPath, '--eps', '0.05', '--within-clusters', '--recall-sample', '5000'], ROOT);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /recall against the exact mode \d+\.\d+%/);
  const keptLines = readFileSync(join(OUT, 'decontaminated_eps0.05.txt'), 'utf8').trimEnd().split('\n');
  const matches = readFileSync(join(OUT, 'decontaminated_eps0.05_matches.csv'), 'utf8').trimEnd().split('\n');
  assert.equal(keptLines.length + matches.length - 1, N);
  const bad = runCli(['decontaminate', '-c', cfg, '--reference', join(ROOT, 'missing.npy'), '--eps', '0.05'], ROOT);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /missing\.npy/);
});
