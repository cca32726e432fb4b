// Step 1 in the box (semdedup embed): a small ONNX model that the test builds (Debian's
// python3-onnx, random weights, a real WordPiece or BPE tokenizer.json) against an independent
// forward pass in numpy (float64) over token ids from a Python tokenizer; shards and ids every
// command reads; resume after SIGKILL with the bytes of an uninterrupted run; texts → kept ids.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { CLI, listFiles, referencePython, tmpFolder } from './helpers.js';
import { loadEmbeddingModel, loadModel, dedup, embedFile, type EmbeddingModel } from '../src/index.js';
import { readNpy } from '../src/io/npy.js';

const PYTHON = referencePython(['numpy', 'onnx']);
const FIXTURE = path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'test', 'fixtures', 'embed_model.py');
const ROOT = tmpFolder('embed');

function py(args: string[]): string {
  return execFileSync(PYTHON, [FIXTURE, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Texts that exercise padding (different lengths in one batch), truncation and empty strings. */
const TEXTS = [
  '',
  'The quick brown fox jumps over the lazy dog.',
  'Running runs ran: unable, able!',
  'Café résumé naïve — semantic duplicates',
  'a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 and more words to truncate',
  'xyz unknownword zzz qqq',
  'Hello world, hello again: duplicates near duplicates 12345.',
  ' ',
  'data',
  'The quick brown fox jumps over the lazy dog.',
];

interface Fixture {
  dir: string;
  ref: Float64Array;
  tokens: number[][];
  d: number;
}

const models: Record<string, Fixture> = {};

function reference(dir: string, texts: readonly string[]): { ref: Float64Array; tokens: number[][]; d: number } {
  const tj = path.join(dir, `texts-${texts.length}.json`);
  writeFileSync(tj, JSON.stringify(texts));
  const out = path.join(dir, `ref-${texts.length}.npy`);
  py(['reference', dir, tj, out]);
  const { header, data } = readNpy(out);
  return { ref: data as Float64Array, tokens: JSON.parse(readFileSync(out + '.ids.json', 'utf8')) as number[][], d: header.shape[1]! };
}

before(() => {
  rmSync(ROOT, { recursive: true, force: true });
  mkdirSync(ROOT, { recursive: true });
  const specs: Record<string, string[]> = {
    wordpiece: ['--tokenizer', 'wordpiece', '--pooling', 'mean', '--normalize', '1', '--layout', 'root', '--max-seq', '16'],
    bpe: ['--tokenizer', 'bpe', '--pooling', 'cls', '--normalize', '0', '--layout', 'onnx', '--max-seq', '12'],
    multi: ['--tokenizer', 'wordpiece', '--pooling', 'cls+max+mean+mean_sqrt_len+weightedmean+lasttoken', '--normalize', '1', '--max-seq', '10', '--hidden', '16'],
  };
  for (const [name, args] of Object.entries(specs)) {
    const dir = path.join(ROOT, name);
    py(['build', dir, ...args]);
    models[name] = { dir, ...reference(dir, TEXTS) };
  }
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const name of ['wordpiece', 'bpe', 'multi']) {
  test(`${name}: embeddings equal the numpy forward pass within 1e-5 (padding, truncation, empty strings)`, async () => {
    const fx = models[name]!;
    // The cases are there: an empty text gives only the special tokens; a long one is truncated.
    assert.equal(fx.tokens[0]!.length, 2);
    const maxSeq = JSON.parse(readFileSync(path.join(fx.dir, 'sentence_bert_config.json'), 'utf8')).max_seq_length as number;
    assert.equal(fx.tokens[4]!.length, maxSeq);
    const model = await loadEmbeddingModel(fx.dir, { device: 'cpu', threads: 1 });
    try {
      assert.equal(model.dim, fx.d);
      // One batch padded to the longest row, batches of a few rows, and one row per batch.
      for (const batchTokens of [1 << 20, 3 * maxSeq, 1]) {
        const rows = await model.embed(TEXTS, { batchTokens });
        const diff = maxAbsDiff(rows, fx.ref);
        assert.ok(diff < 1e-5, `batchTokens ${batchTokens}: max |ours − numpy| = ${diff}`);
      }
      // Normalisation as modules.json says (the BPE model has no Normalize module).
      const rows = await model.embed(TEXTS.slice(1, 2));
      let s = 0;
      for (const v of rows) s += v * v;
      if (name === 'bpe') assert.ok(Math.abs(Math.sqrt(s) - 1) > 1e-3);
      else assert.ok(Math.abs(Math.sqrt(s) - 1) < 1e-6);
    } finally {
      await model.close();
    }
  });
}

test('missing files are errors naming them; nothing is downloaded', async () => {
  const src = models.wordpiece!.dir;
  const dir = path.join(ROOT, 'broken');
  rmSync(dir, { recursive: true, force: true });
  execFileSync('cp', ['-r', src, dir]);
  renameSync(path.join(dir, 'tokenizer.json'), path.join(dir, 'tokenizer.json.off'));
  await assert.rejects(loadEmbeddingModel(dir), (e: Error & { code?: string }) => e.code === 'ERR_INPUT' && e.message.includes(path.join(dir, 'tokenizer.json')));
  renameSync(path.join(dir, 'tokenizer.json.off'), path.join(dir, 'tokenizer.json'));
  rmSync(path.join(dir, '1_Pooling'), { recursive: true });
  await assert.rejects(loadEmbeddingModel(dir), (e: Error) => e.message.includes(path.join(dir, '1_Pooling', 'config.json')));
  rmSync(path.join(dir, 'model.onnx'));
  await assert.rejects(loadEmbeddingModel(dir), (e: Error) => e.message.includes(path.join(dir, 'model.onnx')) && e.message.includes('not found'));
  await assert.rejects(loadEmbeddingModel(path.join(ROOT, 'nope')), (e: Error) => e.message.includes('model folder not found'));
});

function writeJsonl(file: string, texts: readonly string[], ids?: readonly (string | number)[]): void {
  writeFileSync(file, texts.map((t, i) => JSON.stringify({ text: t, ...(ids ? { id: ids[i] } : {}) })).join('\n') + '\n');
}

test('embed: float32 and float16 shards with ids that every command reads; float16 is numpy\'s rounding of the float32 rows', async () => {
  const fx = models.wordpiece!;
  const dir = path.join(ROOT, 'shards');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const input = path.join(dir, 'texts.jsonl');
  const ids = TEXTS.map((_, i) => (i % 2 ? `doc-${i}` : i * 10));
  writeJsonl(input, TEXTS, ids);
  const r32 = await embedFile({ model: fx.dir, input, idField: 'id', output: path.join(dir, 'e32'), dtype: 'float32', shardRows: 4, device: 'cpu' });
  assert.equal(r32.rows, TEXTS.length);
  assert.equal(r32.shards, 3);
  const shards = readdirSync(r32.embeddings).sort();
  assert.deepEqual(shards, ['part-000000.npy', 'part-000001.npy', 'part-000002.npy']);
  const all = new Float32Array(TEXTS.length * fx.d);
  let row = 0;
  for (const f of shards) {
    const { header, data } = readNpy(path.join(r32.embeddings, f));
    assert.equal(header.shape[1], fx.d);
    all.set(data as Float32Array, row * fx.d);
    row += header.shape[0]!;
  }
  assert.ok(maxAbsDiff(all, fx.ref) < 1e-5);
  const idLines = readdirSync(r32.ids).sort().flatMap((f) => readFileSync(path.join(r32.ids, f), 'utf8').trimEnd().split('\n'));
  assert.deepEqual(idLines, ids.map(String));

  const r16 = await embedFile({ model: fx.dir, input, idField: 'id', output: path.join(dir, 'e16'), shardRows: 4, device: 'cpu' });
  assert.equal(r16.dtype, 'float16');
  const check = `
import numpy as np, sys, glob, os
a, b = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(a)):
    x = np.load(os.path.join(a, f)); y = np.load(os.path.join(b, f))
    assert x.dtype == np.float32 and y.dtype == np.float16, (x.dtype, y.dtype)
    assert x.astype(np.float16).tobytes() == y.tobytes(), f
print('ok')`;
  assert.equal(execFileSync(PYTHON, ['-c', check, r32.embeddings, r16.embeddings], { encoding: 'utf8' }).trim(), 'ok');
});

test('embed refuses bad input naming the file, the line and the field, before writing', async () => {
  const fx = models.wordpiece!;
  const dir = path.join(ROOT, 'bad');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const input = path.join(dir, 'texts.jsonl');
  writeFileSync(input, '{"text": "fine", "id": "a"}\n{"body": "no text field", "id": "b"}\n');
  await assert.rejects(embedFile({ model: fx.dir, input, idField: 'id', output: path.join(dir, 'o1'), device: 'cpu' }), (e: Error) =>
    e.message.includes(`${input}: line 2: field 'text' is missing`));
  writeFileSync(input, '{"text": "fine", "id": "a"}\n{"text": "x", "id": "b\\nc"}\n');
  await assert.rejects(embedFile({ model: fx.dir, input, idField: 'id', output: path.join(dir, 'o2'), device: 'cpu' }), (e: Error) =>
    e.message.includes(`${input}: line 2: field 'id' holds a newline`));
  writeFileSync(input, '{"text": "fine"}\nnot json\n');
  await assert.rejects(embedFile({ model: fx.dir, input, output: path.join(dir, 'o3'), device: 'cpu' }), (e: Error) => e.message.includes(`${input}: line 2: not valid JSON`));
  // Nothing was left behind by the refused runs.
  assert.deepEqual(readdirSync(dir).sort(), ['texts.jsonl']);
  // A folder holding other files is not ours to fill.
  const foreign = path.join(dir, 'foreign');
  mkdirSync(foreign);
  writeFileSync(path.join(foreign, 'precious.txt'), 'keep');
  writeFileSync(input, '{"text": "fine"}\n');
  await assert.rejects(embedFile({ model: fx.dir, input, output: foreign, device: 'cpu' }), (e: Error) => e.message.includes('holds other files'));
  assert.deepEqual(readdirSync(foreign), ['precious.txt']);
  // Other settings over existing shards: refused, naming what differs.
  const o4 = path.join(dir, 'o4');
  await embedFile({ model: fx.dir, input, output: o4, device: 'cpu' });
  await assert.rejects(embedFile({ model: fx.dir, input, output: o4, dtype: 'float32', device: 'cpu' }), (e: Error) => e.message.includes('dtype'));
});

test('cancelled through an AbortSignal: ERR_CANCELLED, finished shards kept and resumed', async () => {
  const fx = models.wordpiece!;
  const dir = path.join(ROOT, 'abort');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const input = path.join(dir, 'texts.txt');
  writeFileSync(input, Array.from({ length: 60 }, (_, i) => `line ${i} of the text ${TEXTS[i % TEXTS.length]}`).join('\n') + '\n');
  const ac = new AbortController();
  await assert.rejects(
    embedFile({ model: fx.dir, input, output: path.join(dir, 'o'), shardRows: 10, device: 'cpu', signal: ac.signal, onProgress: (p) => { if (p.done >= 25) ac.abort(); } }),
    (e: Error & { code?: string }) => e.code === 'ERR_CANCELLED',
  );
  const r = await embedFile({ model: fx.dir, input, output: path.join(dir, 'o'), shardRows: 10, device: 'cpu' });
  assert.equal(r.rows, 60);
  assert.ok(r.resumedShards >= 2, `resumed ${r.resumedShards}`);
});

test('killed mid-run (SIGKILL) and rerun: the same bytes as an uninterrupted run', async () => {
  const fx = models.wordpiece!;
  const dir = path.join(ROOT, 'kill');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const input = path.join(dir, 'texts.jsonl');
  const n = 4000;
  const words = 'the of and to in a is that for it as was with be by on not he this are or his from at which but'.split(' ');
  const texts = Array.from({ length: n }, (_, i) => Array.from({ length: 3 + (i * 7) % 20 }, (_, j) => words[(i * 13 + j * j) % words.length]).join(' '));
  writeJsonl(input, texts, texts.map((_, i) => `t${i}`));
  const args = (out: string) => [CLI, 'embed', '--model', fx.dir, '--input', input, '--id-field', 'id', '-o', out, '--shard-rows', '200', '--batch-tokens', '256', '--device', 'cpu', '--threads', '1', '-q'];
  const whole = path.join(dir, 'whole');
  const r0 = spawnSync(process.execPath, args(whole), { encoding: 'utf8' });
  assert.equal(r0.status, 0, r0.stderr);

  const killed = path.join(dir, 'killed');
  const state = path.join(killed, 'semdedup', 'embed.json');
  const child = spawn(process.execPath, args(killed), { stdio: 'ignore' });
  const done = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  // Kill once a few shards are finished (and before the last).
  for (let i = 0; i < 2000; i++) {
    await new Promise((r) => setTimeout(r, 5));
    if (existsSync(state)) {
      try {
        const s = JSON.parse(readFileSync(state, 'utf8')) as { shards: unknown[] };
        if (s.shards.filter(Boolean).length >= 3) break;
      } catch {
        // being replaced
      }
    }
  }
  child.kill('SIGKILL');
  await done;
  const s = JSON.parse(readFileSync(state, 'utf8')) as { shards: unknown[]; complete?: unknown };
  assert.equal(s.complete, undefined, 'the run was killed before it finished (make the input larger if this fails)');
  const r1 = spawnSync(process.execPath, args(killed), { encoding: 'utf8' });
  assert.equal(r1.status, 0, r1.stderr);
  const files = listFiles(whole).filter((f) => !f.startsWith('semdedup/'));
  assert.deepEqual(listFiles(killed).filter((f) => !f.startsWith('semdedup/')), files);
  assert.ok(files.length >= 2 * (n / 200));
  for (const f of files) {
    if (f === 'embeddings.yaml') continue; // names its own folder in a comment
    assert.ok(readFileSync(path.join(whole, f)).equals(readFileSync(path.join(killed, f))), `${f} differs`);
  }
});

test('texts → kept ids end to end: embed, then the printed `semdedup run` over the shards', () => {
  const fx = models.wordpiece!;
  const dir = path.join(ROOT, 'e2e');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // 300 distinct texts and 60 exact copies of some of them (ids name the copies).
  const words = 'the quick brown fox jumps over lazy dog data set text model semantic cluster embedding near copy paragraph document manual page package install file line program option command user system'.split(' ');
  const base = Array.from({ length: 300 }, (_, i) => Array.from({ length: 4 + (i % 9) }, (_, j) => words[(i * 31 + j * 17 + j * j * i) % words.length]).join(' ') + ` ${i}`);
  const texts = [...base];
  const ids = base.map((_, i) => `p${i}`);
  for (let c = 0; c < 60; c++) {
    texts.push(base[(c * 7) % 300]!);
    ids.push(`copy${c}-of-p${(c * 7) % 300}`);
  }
  const input = path.join(dir, 'texts.jsonl');
  writeJsonl(input, texts, ids);
  const e = spawnSync(process.execPath, [CLI, 'embed', '--model', fx.dir, '--input', input, '--id-field', 'id', '-o', 'emb', '--shard-rows', '100', '--device', 'cpu'], { cwd: dir, encoding: 'utf8' });
  assert.equal(e.status, 0, e.stderr);
  const next = /^next: (.*)$/m.exec(e.stdout)?.[1];
  assert.ok(next, e.stdout);
  assert.equal(next, 'semdedup run emb -o emb-dedup');
  const argv = next.split(' ').slice(1);
  const r = spawnSync(process.execPath, [CLI, ...argv, '-k', '3', '--eps-list', '0.001', '--set', 'niter=5'], { cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const kept = readFileSync(path.join(dir, 'emb-dedup', 'kept_eps0.001.txt'), 'utf8').split('\n').slice(0, -1); // one id a line, each ending in a newline
  const keptSet = new Set(kept);
  // Every copy group keeps exactly one member (exact copies have cosine 1).
  for (let c = 0; c < 60; c++) {
    const orig = `p${(c * 7) % 300}`;
    const group = [orig, ...ids.filter((id) => id.endsWith(`-of-${orig}`))];
    assert.equal(group.filter((id) => keptSet.has(id)).length, 1, `group of ${orig}: ${group.filter((id) => keptSet.has(id))}`);
  }
  assert.ok(kept.length <= 300, `kept ${kept.length} of 360 rows, 60 of them copies of 60 distinct texts`);
  // The shards and ids named directly (the sharded-input keys) give the same kept ids.
  const r2 = spawnSync(process.execPath, [CLI, 'run', '--set', 'embeddings=emb/embeddings', '--set', 'ids=emb/ids', '--set', 'output_dir=direct', '--set', 'k=3', '--eps-list', '0.001', '--set', 'niter=5', '-q'], { cwd: dir, encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(readFileSync(path.join(dir, 'direct', 'kept_eps0.001.txt'), 'utf8'), kept.map((id) => `${id}\n`).join(''));
});

test('Parquet input (a text column and an integer id column), and the model handle API', async () => {
  const fx = models.bpe!;
  const dir = path.join(ROOT, 'parquet');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'texts.parquet');
  const { parquetWriteFile } = await import('hyparquet-writer');
  parquetWriteFile({
    filename: file,
    columnData: [
      { name: 'body', data: [...TEXTS], type: 'STRING' },
      { name: 'n', data: TEXTS.map((_, i) => BigInt(1000 + i)), type: 'INT64' },
    ],
  });
  const r = await embedFile({ model: fx.dir, input: file, textField: 'body', idField: 'n', output: path.join(dir, 'o'), dtype: 'float32', device: 'cpu' });
  assert.equal(r.rows, TEXTS.length);
  const { data } = readNpy(path.join(r.embeddings, 'part-000000.npy'));
  assert.ok(maxAbsDiff(data as Float32Array, fx.ref) < 1e-5);
  assert.deepEqual(readFileSync(path.join(r.ids, 'part-000000.txt'), 'utf8').trimEnd().split('\n'), TEXTS.map((_, i) => String(1000 + i)));
  // A model handle: several calls, one loaded model.
  const model: EmbeddingModel = await loadEmbeddingModel(fx.dir, { device: 'cpu' });
  try {
    const a = await model.embed(TEXTS.slice(0, 5));
    const b = await model.embed(TEXTS.slice(5));
    const both = new Float32Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    assert.ok(maxAbsDiff(both, fx.ref) < 1e-5);
    // embedFile with the handle (left open): the same shard as from the folder.
    const r2 = await embedFile({ model, input: file, textField: 'body', idField: 'n', output: path.join(dir, 'o2'), dtype: 'float32' });
    assert.ok(readFileSync(path.join(r2.embeddings, 'part-000000.npy')).equals(readFileSync(path.join(r.embeddings, 'part-000000.npy'))));
    assert.equal((await model.embed(['still open'])).length, fx.d);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(model.embed(TEXTS, { signal: ac.signal }), (e: Error & { code?: string }) => e.code === 'ERR_CANCELLED');
  } finally {
    await model.close();
  }
});

test('the model handle in memory: texts → kept ids and duplicates without files (dedup({texts, model}))', async () => {
  const fx = models.wordpiece!;
  const ids = TEXTS.map((_, i) => `t${i}`);
  const model = await loadModel(fx.dir, { device: 'cpu' });
  try {
    const fromTexts = await dedup({ texts: TEXTS, model, ids, threshold: 0.999 });
    const emb = await model.embed(TEXTS);
    const fromRows = await dedup({ embeddings: emb, ids, threshold: 0.999 });
    assert.deepEqual(fromTexts.kept, fromRows.kept, 'texts through the handle = its rows given as a Float32Array');
    assert.deepEqual(fromTexts.removed, fromRows.removed);
    assert.equal(fromTexts.d, fx.d);
    assert.equal(fromTexts.k, 1, 'k from N = 10');
    // Rows 1 and 9 are the same text: one of them goes, as a duplicate of the other.
    const pair = fromTexts.removed.find((x) => [x.row, x.duplicateOfRow].sort().join() === '1,9');
    assert.ok(pair, `the repeated text is removed: ${JSON.stringify(fromTexts.removed)}`);
    // Each similarity against the numpy forward pass (float64) of the two texts.
    for (const x of fromTexts.removed) {
      let s = 0;
      for (let j = 0; j < fx.d; j++) s += fx.ref[x.row * fx.d + j]! * fx.ref[x.duplicateOfRow * fx.d + j]!;
      assert.ok(Math.abs(x.similarity - s) < 1e-5, `${x.id} ~ ${x.duplicateOf}: ${x.similarity} vs numpy ${s}`);
    }
  } finally {
    await model.close();
  }
});
