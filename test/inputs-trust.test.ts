// The trust boundaries with the inputs as users hold them: every embeddings shard and every ids
// file of a sharded run is an input that readers check (a damaged, missing or swapped shard is
// refused, naming it), no output option may name one, and a planned run's tasks refuse a shard
// changed since the train task; Parquet inputs are converted before the folder is locked, so a
// conversion whose rows are refused leaves nothing behind, never writes through a planted link,
// and the commands that read a finished run refuse a changed Parquet source instead of converting
// it again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { runCli, tmpFolder } from './helpers.js';
import { writeConfig } from './plan-helpers.js';
import { writeSharded } from './shard-helpers.js';
import { loadConfigFiles } from '../src/config.js';
import { makePlan, savePlan, STAGES } from '../src/plan/plan.js';
import { pendingTasks } from '../src/plan/state.js';
import { runTask } from '../src/plan/tasks.js';

/** Flips one bit in the last row of an .npy file holding rows (its size and header unchanged). */
function flipRow(file: string): void {
  const b = readFileSync(file);
  const at = b.length - 10;
  b[at] = b[at]! ^ 0x04;
  writeFileSync(file, b);
}

/** The index of the largest shard (some shards hold no rows). */
function largest(sizes: number[]): number {
  return sizes.indexOf(Math.max(...sizes));
}

test('sharded run: a damaged, missing or swapped shard or ids file is refused by the readers, naming it; -o never names one', () => {
  const dir = tmpFolder('trust-shards');
  try {
    const s = writeSharded(dir, 1200, 16, 6, 10);
    mkdirSync(join(dir, 'ids'));
    let row = 0;
    s.sizes.forEach((m, i) => {
      writeFileSync(join(dir, 'ids', `ids_${i}.txt`), Array.from({ length: m }, (_, j) => `id${row + j}`).join('\n') + (m ? '\n' : ''));
      row += m;
    });
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb'), ids: join(dir, 'ids', 'ids_*.txt'), k: 6, spherical: true, normalize: 'never', eps_list: [0.05], output_dir: out });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    // The manifest records every shard and every ids file.
    const m = JSON.parse(readFileSync(join(out, 'semdedup', 'manifest.json'), 'utf8'));
    assert.equal(Object.keys(m.steps.dedup.inputs).filter((k) => k.startsWith('embeddings.')).length, 6);
    assert.equal(Object.keys(m.steps.extract.inputs).filter((k) => k.startsWith('ids.')).length, 6);
    const ok = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'kept.txt'), '-q'], dir);
    assert.equal(ok.code, 0, ok.stderr);
    const kept = readFileSync(join(dir, 'kept.txt'), 'utf8');
    assert.equal(kept, readFileSync(join(out, 'kept_eps0.05.txt'), 'utf8'));

    // -o naming a shard or an ids file: refused, the file unchanged.
    const damaged = s.shards[largest(s.sizes)]!;
    const before = readFileSync(damaged);
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', damaged, '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /one of the run's inputs or committed files/);
    assert.ok(readFileSync(damaged).equals(before));
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'ids', 'ids_2.txt'), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /one of the run's inputs or committed files/);

    // One shard damaged: every reader refuses, naming that shard (a recorded eps, an eps re-checked, explain).
    flipRow(damaged);
    for (const args of [['extract', '--eps', '0.05'], ['extract', '--eps', '0.033'], ['curve'], ['explain', '--eps', '0.05', '--id', 'id7']]) {
      r = runCli([...args, '-c', cfg, '-q'], dir);
      assert.notEqual(r.code, 0, `${args.join(' ')}: refused`);
      assert.ok(r.stderr.includes(damaged), `${args.join(' ')}: names the shard: ${r.stderr}`);
      assert.match(r.stderr, /changed since the \w+ step/);
    }
    writeFileSync(damaged, before);
    // A shard missing from the folder: the readers count the shards the run read.
    renameSync(s.shards[5]!, join(dir, 'away.npy'));
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /read 6 files of embeddings, not 5/);
    renameSync(join(dir, 'away.npy'), s.shards[5]!);
    // Two shards swapped (same names, each other's contents).
    const a = readFileSync(s.shards[1]!);
    const b = readFileSync(s.shards[2]!);
    writeFileSync(s.shards[1]!, b);
    writeFileSync(s.shards[2]!, a);
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(s.shards[1]!), r.stderr);
    writeFileSync(s.shards[1]!, a);
    writeFileSync(s.shards[2]!, b);
    // One ids file edited (two lines swapped): refused, naming it.
    const idsFile = join(dir, 'ids', 'ids_4.txt');
    const lines = readFileSync(idsFile, 'utf8').split('\n');
    [lines[0], lines[1]] = [lines[1]!, lines[0]!];
    writeFileSync(idsFile, lines.join('\n'));
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'k2.txt'), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.ok(r.stderr.includes(idsFile), r.stderr);
    assert.equal(existsSync(join(dir, 'k2.txt')), false);
    [lines[0], lines[1]] = [lines[1]!, lines[0]!];
    writeFileSync(idsFile, lines.join('\n'));
    // All restored: the readers answer as before.
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'kept2.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(dir, 'kept2.txt'), 'utf8'), kept);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A Parquet file of `n` one-hot float rows of dimension `d` (id 'r<i>'), written by DuckDB; `zeroRow`: that row all zeros. */
async function onehotParquet(path: string, n: number, d: number, opts: { zeroRow?: number; shift?: number } = {}): Promise<void> {
  const inst = await DuckDBInstance.create(':memory:');
  const con = await inst.connect();
  const zero = opts.zeroRow ?? -1;
  const shift = opts.shift ?? 0;
  await con.run(
    `COPY (SELECT 'r' || i AS id, list_transform(range(${d}), j -> CASE WHEN i = ${zero} THEN 0.0 WHEN j = (i * 7 + ${shift}) % ${d} THEN 1.0 ELSE 0.0 END)::FLOAT[] AS embedding ` +
      `FROM range(${n}) t(i)) TO '${path.replace(/'/g, "''")}' (FORMAT parquet, ROW_GROUP_SIZE 500)`,
  );
  con.closeSync();
  inst.closeSync();
}

test('Parquet inputs: rows refused after the conversion leave nothing behind; no conversion through a planted link; readers refuse a changed source without converting it again', async () => {
  const dir = tmpFolder('trust-parquet');
  try {
    const n = 1200;
    const d = 16;
    // A zero row passes the conversion and is refused by the contents check: nothing is left.
    await onehotParquet(join(dir, 'zero.parquet'), n, d, { zeroRow: 700 });
    const gone = join(dir, 'gone');
    let r = runCli(['run', '-c', writeConfig(dir, 'z.yaml', { embeddings: join(dir, 'zero.parquet'), k: 4, output_dir: gone }), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /row 700 is all zeros/);
    assert.equal(existsSync(gone), false, 'no output folder');
    // The same in an existing folder: the folder is left as it was (empty).
    mkdirSync(gone);
    r = runCli(['run', '-c', join(dir, 'z.yaml'), '--executor', 'local', '--tasks', '2', '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /row 700 is all zeros/);
    assert.deepEqual(readdirSync(gone), [], 'the folder as it was');

    // A link planted where the conversion writes: refused, nothing written through it.
    await onehotParquet(join(dir, 'data.parquet'), n, d);
    const linked = join(dir, 'linked');
    mkdirSync(join(linked, 'semdedup'), { recursive: true });
    mkdirSync(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere'), join(linked, 'semdedup', 'import'));
    r = runCli(['run', '-c', writeConfig(dir, 'l.yaml', { embeddings: join(dir, 'data.parquet'), k: 4, output_dir: linked }), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /is a symbolic link/);
    assert.deepEqual(readdirSync(join(dir, 'elsewhere')), [], 'nothing written through the link');

    // A finished run; then its Parquet source changes: readers refuse it, naming it, and convert nothing.
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'data.parquet'), k: 4, eps_list: [0.05], output_dir: out });
    r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'kept.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    // -o naming the Parquet source (an input of the import step): refused.
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'data.parquet'), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /one of the run's inputs or committed files/);
    const conv = join(out, 'semdedup', 'import', 'embeddings.npy');
    const st = statSync(conv, { bigint: true });
    await onehotParquet(join(dir, 'data.parquet'), n, d, { shift: 3 });
    for (const args of [['extract', '--eps', '0.05'], ['curve']]) {
      r = runCli([...args, '-c', cfg, '-q'], dir);
      assert.notEqual(r.code, 0, `${args.join(' ')}: refused`);
      assert.ok(r.stderr.includes(join(dir, 'data.parquet')), `${args.join(' ')}: names the source: ${r.stderr}`);
      assert.match(r.stderr, /changed since the import step read it/);
    }
    const st2 = statSync(conv, { bigint: true });
    assert.equal(st2.mtimeNs, st.mtimeNs, 'not converted again by a reader');
    assert.equal(st2.ino, st.ino);
    // The run itself converts it again and runs.
    r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('planned run over shards: a shard changed after the train task is refused by the next task, naming it; restored, the run completes', async () => {
  const dir = tmpFolder('trust-plan-shards');
  try {
    const s = writeSharded(dir, 1500, 16, 7, 10);
    const out = join(dir, 'out');
    const cfg = loadConfigFiles([writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb'), k: 6, spherical: true, normalize: 'never', eps_list: [0.05], output_dir: out })]);
    const { plan } = savePlan(makePlan(cfg, { tasks: 2 }));
    await runTask(plan, 'train', 0, { threads: 2 });
    const shard = s.shards[largest(s.sizes)]!;
    const before = readFileSync(shard);
    flipRow(shard);
    await assert.rejects(runTask(plan, 'assign', 0, { threads: 2 }), (e: Error) => e.message.includes(shard) && /changed since the train task read them/.test(e.message));
    writeFileSync(shard, before);
    // The bytes restored (a file up to 64 MiB is identified by its content): the run completes.
    for (const stage of STAGES) for (const i of pendingTasks(plan, stage)) await runTask(plan, stage, i, { threads: 2 });
    const m = JSON.parse(readFileSync(join(out, 'semdedup', 'manifest.json'), 'utf8'));
    assert.equal(Object.keys(m.steps.cluster.inputs).filter((k) => k.startsWith('embeddings.')).length, 7);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
