// Readers trust only what the manifest commits: one test per "silently wrong answer" of the trust
// boundaries report, each through the command line as a user meets it, each checked against an
// independent expectation (the bytes of an uncorrupted run, the files on disk).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { readNpy } from '../src/io/npy.js';
import { CLI, runCli } from './helpers.js';
import { DIM, K, makeData, runArgs, type Data } from './rel-helpers.js';
import { writeConfig, writeDataset } from './plan-helpers.js';
import { tmpFolder } from './helpers.js';

/** The arguments of the after-the-run commands (which take no --device or --threads flags). */
function afterArgs(d: Data, out: string, extra: string[] = []): string[] {
  return runArgs(d, out, extra).flatMap((a, i, all) => (a === '--device' || a === '--threads' ? [] : all[i - 1] === '--device' || all[i - 1] === '--threads' ? [] : [a]))
    .concat(['--set', 'threads=2']);
}

function ok(args: string[], cwd: string, what: string): string {
  const r = runCli(args, cwd, 180_000);
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout;
}

/** A typed refusal (exit 1 or 2, no stack) whose message says what to rerun and matches every part. */
function refused(args: string[], cwd: string, parts: RegExp[], what: string): string {
  const r = runCli(args, cwd, 180_000);
  assert.ok(r.code === 1 || r.code === 2, `${what}: expected a refusal, got exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error|    at /, `${what}: a stack trace leaked\n${r.stderr}`);
  assert.match(r.stderr, /rerun|restore|give the run's/, `${what}: the message should say what to rerun\n${r.stderr}`);
  for (const p of parts) assert.match(r.stderr, p, `${what}\n${r.stderr}`);
  return r.stderr;
}

/** Rewrites `file` through `edit` keeping its size and its mtime (to the nanosecond where the filesystem keeps it). */
export function editKeepingStamp(file: string, edit: (b: Buffer) => void): void {
  const st = statSync(file, { bigint: true });
  const b = readFileSync(file);
  const size = b.length;
  edit(b);
  assert.equal(b.length, size);
  writeFileSync(file, b);
  restoreMtime(file, st.mtimeNs);
  assert.equal(statSync(file).size, Number(st.size));
}

/** Sets the mtime of `file` back to `mtimeNs`, to the nanosecond (utimensat through touch). */
export function restoreMtime(file: string, mtimeNs: bigint): void {
  const ns = String(mtimeNs % 1_000_000_000n).padStart(9, '0');
  const t = spawnSync('touch', ['-m', '-d', `@${mtimeNs / 1_000_000_000n}.${ns}`, file]);
  assert.equal(t.status, 0, String(t.stderr));
  assert.equal(statSync(file, { bigint: true }).mtimeNs, mtimeNs);
}

function swapRows(file: string, rowBytes: number, a: number, b: number, header = 0): void {
  editKeepingStamp(file, (buf) => {
    const x = Buffer.from(buf.subarray(header + a * rowBytes, header + (a + 1) * rowBytes));
    buf.copy(buf, header + a * rowBytes, header + b * rowBytes, header + (b + 1) * rowBytes);
    x.copy(buf, header + b * rowBytes);
  });
}

function npyHeaderLength(file: string): number {
  const b = readFileSync(file);
  const major = b[6]!;
  return major === 1 ? 10 + b.readUInt16LE(8) : 12 + b.readUInt32LE(8);
}

// ---------------------------------------------------------------------------------------------
// 5. After-the-run readers check that the embeddings are the ones the run read.

test('readers: explain and extract refuse embeddings whose rows were swapped after the run', () => {
  const d = makeData('rd5');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  // A removed member and the earlier one that removed it (similarity ~1): swap the removed row
  // with a row of another cluster, so that the stored "similarity 1" is now false.
  const csv = path.join(d.dir, 'why.csv');
  ok(['explain', ...afterArgs(d, out), '--eps', '0.01', '-o', csv], d.dir, 'explain');
  const line = readFileSync(csv, 'utf8').split('\n')[1]!.split(',');
  const removedRow = Number(line[1]);
  const nearest = readNpy(path.join(out, 'nearest_cent.npy')).data as BigInt64Array;
  const other = nearest.findIndex((c) => c !== nearest[removedRow]);
  swapRows(d.emb, DIM * 4, removedRow, other);
  for (const args of [
    ['explain', ...afterArgs(d, out), '--eps', '0.01', '--id', d.idList[removedRow]!],
    ['explain', ...afterArgs(d, out), '--eps', '0.01'],
    ['extract', ...afterArgs(d, out), '--eps', '1e-9', '--removed', '-o', path.join(d.dir, 'removed.txt')],
    ['extract', ...afterArgs(d, out), '--eps', '0.01', '-o', path.join(d.dir, 'kept.txt')],
    ['curve', ...afterArgs(d, out)],
    ['report', ...afterArgs(d, out), '-o', path.join(d.dir, 'r.html')],
  ])
    refused(args, d.dir, [/embs\.f32.*(changed|not the ones)/], `${args[0]} after swapping two embedding rows`);
  assert.ok(!existsSync(path.join(d.dir, 'removed.txt')) && !existsSync(path.join(d.dir, 'kept.txt')), 'no list written');
  // The rerun the message asks for gives the fresh run's answer.
  ok(['run', ...runArgs(d, out)], d.dir, 'rerun');
  const fresh = path.join(d.dir, 'fresh');
  ok(['run', ...runArgs(d, fresh)], d.dir, 'fresh run');
  assert.equal(readFileSync(path.join(out, 'kept_eps0.01.txt'), 'utf8'), readFileSync(path.join(fresh, 'kept_eps0.01.txt'), 'utf8'));
});

test('readers: with normalize: always, readers refuse a source changed after the run (the normalised copy is unchanged)', () => {
  const d = makeData('rd5norm');
  // Rows of norm 2: the run normalises them into its own copy.
  const b = readFileSync(d.emb);
  const x = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * 2;
  writeFileSync(d.emb, b);
  const out = path.join(d.dir, 'out');
  const always = ['--set', 'normalize=always'];
  ok(['run', ...runArgs(d, out, always)], d.dir, 'run');
  const before = readFileSync(path.join(out, 'kept_eps0.01.txt'), 'utf8');
  ok(['extract', ...afterArgs(d, out, always), '--eps', '0.03', '-o', path.join(d.dir, 'k.txt')], d.dir, 'extract at an eps to re-check');
  swapRows(d.emb, DIM * 4, 0, 300);
  for (const args of [
    ['extract', ...afterArgs(d, out, always), '--eps', '0.03', '-o', path.join(d.dir, 'k2.txt')],
    ['curve', ...afterArgs(d, out, always)],
    ['dedup', ...runArgs(d, out, always)],
  ])
    refused(args, d.dir, [/embs\.f32.*changed since the normalize step/], `${args[0]} after the source changed`);
  ok(['run', ...runArgs(d, out, always)], d.dir, 'rerun');
  assert.notEqual(readFileSync(path.join(out, 'kept_eps0.01.txt'), 'utf8'), before, 'the rerun used the changed source');
});

test('readers: refuse ids whose lines were swapped, and a recorded ids file that is gone', () => {
  const d = makeData('rd5ids');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const good = readFileSync(d.ids);
  swapRows(d.ids, 24, 3, 400);
  for (const args of [
    ['extract', ...afterArgs(d, out), '--eps', '0.01', '-o', path.join(d.dir, 'kept.txt')],
    ['explain', ...afterArgs(d, out), '--eps', '0.01'],
  ])
    refused(args, d.dir, [/paths\.S24.*ids.*changed since/], `${args[0]} with swapped ids`);
  writeFileSync(d.ids, good);
  // The config names no ids: the run's recorded ids file is used, and when it is gone, refused
  // (not row numbers in place of ids).
  const noIds = afterArgs(d, out).filter((a, i, all) => !a.startsWith('ids') && !(a === '--set' && /^ids/.test(all[i + 1] ?? '')));
  const kept = path.join(d.dir, 'kept2.txt');
  ok(['extract', ...noIds, '--eps', '0.01', '-o', kept], d.dir, 'extract with the recorded ids');
  assert.equal(readFileSync(kept, 'utf8'), readFileSync(path.join(out, 'kept_eps0.01.txt'), 'utf8'));
  unlinkSync(d.ids);
  refused(['extract', ...noIds, '--eps', '0.01', '-o', path.join(d.dir, 'kept3.txt')], d.dir, [/paths\.S24.*missing/], 'extract with the recorded ids gone');
});

test('manifest: an edit of manifest.json that keeps its size and mtime commits nothing (sealed)', () => {
  const d = makeData('rdseal');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const man = path.join(out, 'semdedup', 'manifest.json');
  // The dedup record now claims the easy keep order (same length as "hard").
  editKeepingStamp(man, (b) => {
    const s = b.toString('utf8').replace('"whichToKeep": "hard"', '"whichToKeep": "easy"');
    b.write(s, 0, 'utf8');
  });
  assert.match(readFileSync(man, 'utf8'), /"whichToKeep": "easy"/);
  refused(['extract', ...afterArgs(d, out, ['--set', 'which_to_keep=easy']), '--eps', '0.01', '-o', path.join(d.dir, 'k.txt')], d.dir,
    [/manifest\.json.*(checksum|edited or damaged)/], 'extract over an edited manifest');
});

// ---------------------------------------------------------------------------------------------
// 6. A planned run and a single run on one folder do not both proceed.

test('locks: a single run refuses while a planned run works on the folder, and the manifest never pairs another k with the centroids', async () => {
  const dir = tmpFolder('rd6');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 100_000, dim: 32, clusters: 30, seed: 3 });
    const out = path.join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: emb, output_dir: out, k: 30, niter: 10, eps_list: [0.05], device: 'cpu', threads: 1 });
    const planned = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--executor', 'local', '--tasks', '4', '--workers', '2', '-q'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let plannedErr = '';
    planned.stderr.on('data', (c) => (plannedErr += c));
    const plannedDone = new Promise<number | null>((res) => planned.on('exit', (code) => res(code)));
    // Once its train task is done the planned run is between the tasks that write the folder's own
    // files (its assign, group and dedup tasks write only their parts): the single run must still refuse.
    const assign = path.join(out, 'semdedup', 'plan', 'state', 'assign.0.json');
    for (let i = 0; i < 1200 && !existsSync(assign); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(existsSync(assign), `the planned run reached its assign stage: ${plannedErr}`);
    const single = runCli(['run', '-c', cfg, '--set', 'k=20', '-q'], dir, 180_000);
    const code = await plannedDone;
    assert.equal(code, 0, `the planned run completes: ${plannedErr}`);
    assert.notEqual(single.code, 0, 'the single run must refuse while the planned run holds the folder');
    assert.match(single.stderr, /in use by another semdedup/);
    // Whatever happened, the manifest commits cluster with the k of the centroids file.
    const m = JSON.parse(readFileSync(path.join(out, 'semdedup', 'manifest.json'), 'utf8')) as { steps: { cluster: { params: { k: number } } } };
    const cent = readNpy(path.join(out, 'kmeans_centroids.npy'));
    assert.equal(m.steps.cluster.params.k, cent.header.shape[0]);
    assert.equal(cent.header.shape[0], 30);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 7. decontaminate --within-clusters reads only committed centroids and cluster order.

test('readers: decontaminate --within-clusters refuses edited centroids and a folder without manifest', () => {
  const d = makeData('rd7');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const ref = path.join(d.dir, 'ref.f32');
  writeFileSync(ref, Buffer.from(d.X.buffer, d.X.byteOffset, 50 * DIM * 4));
  const args = ['decontaminate', ...afterArgs(d, out), '--reference', ref, '--eps', '0.01', '--within-clusters', '-o', path.join(d.dir, 'dc.txt'), '--matches', path.join(d.dir, 'dc.csv')];
  ok(args, d.dir, 'decontaminate on the intact folder');
  const cent = path.join(out, 'kmeans_centroids.npy');
  const orig = readFileSync(cent);
  editKeepingStamp(cent, (b) => {
    b[b.length - 7] ^= 0x10;
  });
  refused(args, d.dir, [/kmeans_centroids\.npy is not the file the cluster step completed/], 'flipped byte in the centroids');
  writeFileSync(cent, orig);
  rmSync(path.join(out, 'semdedup', 'manifest.json'));
  refused(args, d.dir, [/manifest\.json/], 'no manifest.json');
});

// ---------------------------------------------------------------------------------------------
// 8. exact-duplicates never falls back to row order when the dedup results are there but unreadable.

test('readers: exact-duplicates refuses dedup results it cannot use instead of falling back to row order', () => {
  const d = makeData('rd8');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const pairs = path.join(out, 'semdedup', 'exact_duplicates.npy');
  for (const [file, how] of [['keep_order.npy', 'flip'], ['M.npy', 'truncate'], ['manifest.json', 'delete']] as const) {
    const p = path.join(out, 'semdedup', file);
    const orig = readFileSync(p);
    if (how === 'flip') editKeepingStamp(p, (b) => void (b[b.length - 3] ^= 0x01));
    else if (how === 'truncate') writeFileSync(p, orig.subarray(0, orig.length - 8));
    else rmSync(p);
    refused(['exact-duplicates', ...afterArgs(d, out)], d.dir, [new RegExp(file.replace('.', '\\.'))], `${how} ${file}`);
    assert.ok(!existsSync(pairs), `${how} ${file}: no exact_duplicates.npy written`);
    writeFileSync(p, orig);
  }
});

// ---------------------------------------------------------------------------------------------
// 9. report shows exact duplicates only from a committed exact_duplicates.npy.

test('readers: report refuses an exact_duplicates.npy the engine did not commit', () => {
  const d = makeData('rd9');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out, ['--set', 'exact_duplicates=true'])], d.dir, 'run');
  const html = path.join(d.dir, 'r.html');
  ok(['report', ...afterArgs(d, out), '-o', html], d.dir, 'report');
  const pairs = readNpy(path.join(out, 'semdedup', 'exact_duplicates.npy'));
  const copies = pairs.header.shape[0]!;
  assert.ok(copies > 0, `the fixture has exact copies (${copies})`);
  assert.match(readFileSync(html, 'utf8'), new RegExp(`exact \\(byte-identical\\) copies: <b>${copies}</b>`));
  // Another file in its place: 5 pairs.
  const other = makeData('rd9b', { n: 40 });
  ok(['exact-duplicates', ...afterArgs(other, path.join(other.dir, 'o'))], other.dir, 'a 5-pair file elsewhere');
  copyFileSync(path.join(other.dir, 'o', 'semdedup', 'exact_duplicates.npy'), path.join(out, 'semdedup', 'exact_duplicates.npy'));
  rmSync(html);
  refused(['report', ...afterArgs(d, out), '-o', html], d.dir, [/exact_duplicates\.npy is not the file the exact step completed.*rerun semdedup exact-duplicates/], 'a foreign exact_duplicates.npy');
  assert.ok(!existsSync(html));
});

// ---------------------------------------------------------------------------------------------
// 10. Planned-run parts carry a checksum, checked when read.

test('planned runs: a part edited keeping its size and mtime is recomputed, not assembled', () => {
  const dir = tmpFolder('rd10');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 6000, dim: 32, clusters: 8, seed: 4 });
    const base = { embeddings: emb, k: 8, niter: 5, eps_list: [0.05], device: 'cpu', threads: 1 };
    const single = path.join(dir, 'single');
    const planned = path.join(dir, 'planned');
    ok(['run', '-c', writeConfig(dir, 's.yaml', { ...base, output_dir: single }), '-q'], dir, 'single run');
    const pcfg = writeConfig(dir, 'p.yaml', { ...base, output_dir: planned });
    ok(['run', '-c', pcfg, '--executor', 'local', '--tasks', '2', '--workers', '2', '-q'], dir, 'planned run');
    const M = (o: string) => readFileSync(path.join(o, 'semdedup', 'M.npy'));
    assert.ok(M(planned).equals(M(single)));
    // Edit M values of dedup task 0's part (same size, same mtime), and make the extract task run again.
    const part = path.join(planned, 'semdedup', 'plan', 'parts', 'dedup', 'M.0.npy');
    const h = npyHeaderLength(part);
    editKeepingStamp(part, (b) => {
      for (let i = h; i + 8 <= b.length; i += 8) b.writeDoubleLE(0.5, i);
    });
    rmSync(path.join(planned, 'semdedup', 'plan', 'state', 'extract.0.json'));
    ok(['run', '-c', pcfg, '--executor', 'local', '--tasks', '2', '--workers', '2', '-q'], dir, 'planned rerun');
    assert.ok(M(planned).equals(M(single)), 'the extract task assembled an edited part: M.npy differs from the single run');
    for (const f of ['kept_eps0.05.txt', path.join('semdedup', 'keep_order.npy')])
      assert.ok(readFileSync(path.join(planned, f)).equals(readFileSync(path.join(single, f))), `${f} differs`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// 11. Outputs of an earlier run that the manifest no longer commits are removed; links are not.

test('reruns: kept lists of other eps and sorted clusters beyond k are removed after a rerun; links and other files stay', () => {
  const d = makeData('rd11');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out, ['--set', 'k=10', '--set', 'eps_list=0.01,0.05', '--set', 'export_sorted_clusters=true'])], d.dir, 'k=10 run');
  const sorted = path.join(out, 'sorted_clusters');
  assert.equal(readdirSync(sorted).length, 10);
  // A user's file, and a link named like an engine output pointing outside the folder.
  const mine = path.join(out, 'notes.txt');
  writeFileSync(mine, 'mine');
  const target = path.join(d.dir, 'precious.txt');
  writeFileSync(target, 'precious');
  symlinkSync(target, path.join(out, 'kept_eps0.3.txt'));
  ok(['run', ...runArgs(d, out, ['--set', `k=${K}`, '--set', 'eps_list=0.1', '--set', 'export_sorted_clusters=true'])], d.dir, 'k=4 run');
  assert.deepEqual(readdirSync(sorted).sort(), Array.from({ length: K }, (_, c) => `cluster_${c}.npy`).sort(), 'sorted clusters beyond k removed');
  for (const stale of ['kept_eps0.01.txt', 'kept_eps0.05.txt', path.join('semdedup', 'kept_rows_eps0.01.npy'), path.join('semdedup', 'kept_rows_eps0.05.npy')])
    assert.ok(!existsSync(path.join(out, stale)), `${stale} of the earlier run removed`);
  assert.ok(existsSync(path.join(out, 'kept_eps0.1.txt')));
  assert.equal(readFileSync(mine, 'utf8'), 'mine');
  assert.ok(statSync(path.join(out, 'kept_eps0.3.txt')).isFile(), 'the link stays');
  assert.equal(readFileSync(target, 'utf8'), 'precious');
  // A run without the export leaves no sorted clusters of the earlier ranking.
  ok(['run', ...runArgs(d, out, ['--set', 'k=3', '--set', 'eps_list=0.1'])], d.dir, 'k=3 run without export');
  assert.deepEqual(readdirSync(sorted), []);
});
