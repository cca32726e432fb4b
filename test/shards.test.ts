// Sharded embeddings: .npy shards (a list, a glob, a folder) read as one dataset by one multi-file
// view in the native core. A run over shards must write the bytes of a run over the same rows
// concatenated into one file, single process and planned; every shard is checked before anything
// is written; thousands of shards run with few descriptors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { npyHeaderBytes, writeNpy } from '../src/io/npy.js';
import { openEmbeddings, embeddingsLayout } from '../src/embeddings.js';
import { readManifest } from '../src/manifest.js';
import { CLI, runCli, tmpFolder } from './helpers.js';
import { assertSameOutputs, writeConfig } from './plan-helpers.js';
import { writeSharded } from './shard-helpers.js';

test('sharded .npy: a list, a glob and a folder give one layout; rows across shard boundaries equal the whole file', () => {
  const dir = tmpFolder('shards-layout');
  try {
    const s = writeSharded(dir, 3000, 16, 12);
    const a = embeddingsLayout({ path: s.shards });
    const b = embeddingsLayout({ path: join(dir, 'emb', 'emb_*.npy') });
    const c = embeddingsLayout({ path: join(dir, 'emb') });
    assert.deepEqual(b.shards, a.shards);
    assert.deepEqual(c.shards, a.shards);
    assert.equal(a.n, 3000);
    assert.equal(a.d, 16);
    assert.equal(a.dtype, 'float16');
    assert.deepEqual(a.shards!.map((x) => x.n), s.sizes);
    const whole = openEmbeddings({ path: s.whole });
    const sh = openEmbeddings({ path: join(dir, 'emb') });
    try {
      assert.equal(sh.n, whole.n);
      // every boundary crossed: all rows at once, and windows around each boundary
      assert.deepEqual(sh.rows(0, 3000), whole.rows(0, 3000));
      let at = 0;
      for (const m of s.sizes) {
        at += m;
        const b0 = Math.max(0, at - 3);
        const e0 = Math.min(3000, at + 3);
        assert.deepEqual(sh.rows(b0, e0), whole.rows(b0, e0), `rows ${b0}..${e0}`);
      }
      assert.throws(() => sh.view(), /sharded/);
    } finally {
      whole.close();
      sh.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('raw memmap shards (D from the config) read as one dataset; dataset_size checks the total', () => {
  const dir = tmpFolder('shards-raw');
  try {
    const s = writeSharded(dir, 1000, 8, 5);
    mkdirSync(join(dir, 'raw'));
    const files: string[] = [];
    let row = 0;
    s.sizes.forEach((m, i) => {
      const f = join(dir, 'raw', `part-${i}.f16`);
      writeFileSync(f, Buffer.from(s.bits.buffer, row * 8 * 2, m * 8 * 2));
      files.push(f);
      row += m;
    });
    const whole = openEmbeddings({ path: s.whole });
    const raw = openEmbeddings({ path: files, format: 'memmap', dtype: 'float16', dim: 8, count: 1000 });
    try {
      assert.equal(raw.n, 1000);
      assert.deepEqual(raw.rows(0, 1000), whole.rows(0, 1000));
    } finally {
      raw.close();
      whole.close();
    }
    assert.throws(() => embeddingsLayout({ path: files, format: 'memmap', dtype: 'float16', dim: 8, count: 999 }), /dataset_size 999 but the 5 shards hold 1000 rows/);
    assert.throws(() => embeddingsLayout({ path: files, format: 'memmap', dtype: 'float16', dim: 7 }), /part-\d\.f16: file size .*\(shard \d of 5/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('64 float16 shards with an ids file per shard: the bytes of the concatenated file, single process and --executor local --tasks 3; after-the-run commands read the shards', () => {
  const dir = tmpFolder('shards-run');
  try {
    const n = 20_000;
    const s = writeSharded(dir, n, 32, 64);
    // ids: one text file per shard beside the shards, and the same ids as one file
    const ids = Array.from({ length: n }, (_, i) => `img_${String((i * 7919) % n).padStart(6, '0')}.jpg`);
    mkdirSync(join(dir, 'ids'));
    let row = 0;
    s.sizes.forEach((m, i) => {
      writeFileSync(join(dir, 'ids', `ids_${String(i).padStart(4, '0')}.txt`), ids.slice(row, row + m).join('\n'));
      row += m;
    });
    writeFileSync(join(dir, 'ids.txt'), ids.join('\n'));
    const base = { k: 20, spherical: true, eps_list: [0.01, 0.05, 0.1], which_to_keep: 'hard', normalize: 'never' };
    const single = join(dir, 'single');
    let r = runCli(['run', '-c', writeConfig(dir, 'one.yaml', { ...base, embeddings: s.whole, ids: join(dir, 'ids.txt'), output_dir: single }), '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const shardCfg = writeConfig(dir, 'shards.yaml', { ...base, embeddings: join(dir, 'emb'), ids: join(dir, 'ids', 'ids_*.txt'), output_dir: join(dir, 'sharded') });
    r = runCli(['run', '-c', shardCfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const compared = assertSameOutputs(single, join(dir, 'sharded'));
    assert.ok(compared.includes('kept_eps0.05.txt'));
    // the manifest records each shard like a single file
    const m = readManifest(join(dir, 'sharded'));
    const inputs = m.steps.dedup!.inputs;
    for (let i = 0; i < 64; i++) assert.equal(inputs[`embeddings.${i}`]?.path, s.shards[i], `shard ${i} recorded`);
    assert.equal(inputs['embeddings.64'], undefined);
    assert.equal(inputs.embeddings, undefined);
    // planned: task row ranges cross shard boundaries
    r = runCli(['run', '-c', shardCfg, '--set', `output_dir=${join(dir, 'planned')}`, '--executor', 'local', '--tasks', '3', '--workers', '2'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assertSameOutputs(single, join(dir, 'planned'));
    // after the run: any eps (re-checked in float64 from the shards), explain
    for (const out of ['single', 'sharded']) {
      const cfg = out === 'single' ? join(dir, 'one.yaml') : shardCfg;
      r = runCli(['extract', '-c', cfg, '--set', `output_dir=${join(dir, out)}`, '--eps', '0.03', '-o', join(dir, `${out}-0.03.txt`), '-q'], dir);
      assert.equal(r.code, 0, r.stderr);
      r = runCli(['explain', '-c', cfg, '--set', `output_dir=${join(dir, out)}`, '--eps', '0.05', '-o', join(dir, `${out}-why.csv`)], dir);
      assert.equal(r.code, 0, r.stderr);
    }
    assert.ok(readFileSync(join(dir, 'single-0.03.txt')).equals(readFileSync(join(dir, 'sharded-0.03.txt'))));
    assert.ok(readFileSync(join(dir, 'single-why.csv')).equals(readFileSync(join(dir, 'sharded-why.csv'))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad shards (other D, other dtype, truncated, Fortran order, a wrong ids count) are refused before anything is written, naming the shard', () => {
  const dir = tmpFolder('shards-bad');
  try {
    const s = writeSharded(dir, 2000, 16, 8);
    const bad = join(dir, 'emb', 'emb_0005.npy');
    const good = readFileSync(bad);
    const m = s.sizes[5]!;
    const cases: [string, () => void, RegExp][] = [
      ['other D', () => writeNpy(bad, new Uint16Array(m * 8), { shape: [m, 8], float16: true }), /rows of 8 values, but .*emb_0000\.npy \(the first shard\) has 16/],
      ['other dtype', () => writeNpy(bad, new Float32Array(m * 16), { shape: [m, 16] }), /float32 values, but .*emb_0000\.npy \(the first shard\) holds float16/],
      ['truncated', () => writeFileSync(bad, good.subarray(0, good.length - 10)), /truncated/],
      ['Fortran order', () => writeFileSync(bad, Buffer.concat([npyHeaderBytes('<f2', [m, 16], true), good.subarray(npyHeaderBytes('<f2', [m, 16]).length)])), /Fortran/],
    ];
    for (const [what, make, msg] of cases) {
      make();
      const out = join(dir, `out-${what.replace(/ /g, '-')}`);
      const r = runCli(['run', '-c', writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb'), k: 4, output_dir: out }), '-q'], dir);
      assert.notEqual(r.code, 0, `${what}: refused`);
      assert.match(r.stderr, /emb_0005\.npy/, `${what}: the error names the shard: ${r.stderr}`);
      assert.match(r.stderr, msg, what);
      assert.match(r.stderr, /shard 6 of 8/, what);
      assert.equal(existsSync(out), false, `${what}: nothing written`);
      writeFileSync(bad, good);
    }
    // ids beside the shards: one file holds a row too few
    mkdirSync(join(dir, 'ids'));
    let row = 0;
    s.sizes.forEach((sz, i) => {
      const n = i === 2 ? sz - 1 : sz;
      writeFileSync(join(dir, 'ids', `ids_${i}.txt`), Array.from({ length: n }, (_, j) => `r${row + j}`).join('\n'));
      row += sz;
    });
    const out = join(dir, 'out-ids');
    const r = runCli(['run', '-c', writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb'), ids: join(dir, 'ids'), k: 4, output_dir: out }), '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /ids_2\.txt/);
    assert.equal(existsSync(out), false, 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('2,000 shards run under a limit of 256 open files', () => {
  const dir = tmpFolder('shards-many');
  try {
    const s = writeSharded(dir, 12_000, 16, 2000, 8);
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb', 'emb_*.npy'), k: 8, spherical: true, normalize: 'never', output_dir: join(dir, 'out') });
    const r = spawnSync('bash', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, CLI, 'run', '-c', cfg, '-q'], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    assert.equal(r.status, 0, r.stderr);
    const one = writeConfig(dir, 'one.yaml', { embeddings: s.whole, k: 8, spherical: true, normalize: 'never', output_dir: join(dir, 'one') });
    assert.equal(runCli(['run', '-c', one, '-q'], dir, 300_000).code, 0);
    assertSameOutputs(join(dir, 'one'), join(dir, 'out'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
