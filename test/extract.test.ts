// Step 5 with every eps in one native pass: the kept and removed rows and the ids text files
// against a plain reference (a loop per eps over M, ids decoded one by one and joined), for
// every kind of ids, and the errors for ids that cannot be written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { extractPrunedData, extractPrunedDataAll } from '../src/steps/extract.js';
import { idsFromStrings, readIds, rowNumberIds, writeIdsMemmap, type Ids } from '../src/io/ids.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { outputs } from '../src/layout.js';
import { tmpFolder } from './helpers.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function data(n: number, seed: number): { keepOrder: BigInt64Array; M: Float64Array } {
  const r = lcg(seed);
  const perm = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  const keepOrder = BigInt64Array.from(perm, (v) => BigInt(v));
  const M = Float64Array.from({ length: n }, () => {
    const u = r();
    return u < 0.05 ? 0.95 : u < 0.1 ? 1 : u < 0.12 ? NaN : r();
  });
  return { keepOrder, M };
}

function reference(d: { keepOrder: BigInt64Array; M: Float64Array }, eps: number, ids: Ids | undefined, removed = false) {
  const kept: bigint[] = [];
  const rem: bigint[] = [];
  for (let i = 0; i < d.M.length; i++) (d.M[i]! > 1 - eps ? rem : kept).push(d.keepOrder[i]!);
  const rows = removed ? rem : kept;
  // A POSIX text file: every id followed by a newline.
  const text = rows.map((r) => `${ids ? ids.get(Number(r)) : String(r)}\n`).join('');
  return { kept: BigInt64Array.from(kept), removed: BigInt64Array.from(rem), text };
}

const EPS = [0.01, 0.05, 0.1];

test('extract: all eps in one pass equal a loop per eps, for S, U, text and row-number ids', async () => {
  const dir = tmpFolder('extract');
  const n = 150_000;
  const d = data(n, 7);
  const strs = Array.from({ length: n }, (_, i) => (i % 9 === 0 ? `é-${i}-😀` : `img_${(i * 7919) % 1_000_003}.JPEG`));
  writeIdsMemmap(join(dir, 'ids.S24'), strs, 24);
  writeNpy(join(dir, 'ids-u.npy'), strs, { strKind: 'U' });
  writeFileSync(join(dir, 'ids.txt'), strs.join('\r\n') + '\n');
  const kinds: [string, Ids | undefined][] = [
    ['S memmap', readIds(join(dir, 'ids.S24'), { format: 'memmap', dtype: 'S24', count: n })],
    ['U npy', readIds(join(dir, 'ids-u.npy'), { format: 'npy', count: n })],
    ['text', readIds(join(dir, 'ids.txt'), { format: 'text', count: n })],
    ['row numbers', rowNumberIds(n)],
    ['none', undefined],
  ];
  for (const [name, ids] of kinds) {
    for (const removed of [false, true]) {
      const files = EPS.map((e) => join(dir, `${name.replace(' ', '_')}-${removed}-${e}.txt`));
      const res = await extractPrunedDataAll({ outputDir: dir, epsList: EPS, outputs: files, data: d, removed, ...(ids ? { ids } : {}), threads: 3 });
      assert.equal(res.length, EPS.length);
      for (let e = 0; e < EPS.length; e++) {
        const ref = reference(d, EPS[e]!, ids, removed);
        assert.deepEqual(res[e]!.keptRows, ref.kept, `${name} eps ${EPS[e]}: kept rows`);
        assert.deepEqual(res[e]!.removedRows, ref.removed, `${name} eps ${EPS[e]}: removed rows`);
        assert.equal(res[e]!.summary.kept, ref.kept.length);
        assert.equal(readFileSync(files[e]!, 'utf8'), ref.text, `${name} removed=${removed} eps ${EPS[e]}: ids text`);
        assert.deepEqual(readNpy(outputs.keptRows(dir, EPS[e]!)).data, ref.kept, `${name} eps ${EPS[e]}: kept_rows npy`);
      }
    }
  }
});

test('extract: one eps (the extract command) gives the bytes of the all-eps pass; ids holding a newline still work', async () => {
  const dir = tmpFolder('extract1');
  const n = 5000;
  const d = data(n, 3);
  const strs = Array.from({ length: n }, (_, i) => (i === 17 ? 'two\nlines' : `x${i}`));
  const ids = idsFromStrings(strs);
  const all = await extractPrunedDataAll({ outputDir: dir, epsList: EPS, outputs: EPS.map((e) => join(dir, `a${e}.txt`)), data: d, ids });
  for (let e = 0; e < EPS.length; e++) {
    const one = await extractPrunedData({ outputDir: dir, eps: EPS[e]!, output: join(dir, `o${EPS[e]}.txt`), data: d, ids });
    assert.deepEqual(one.keptRows, all[e]!.keptRows);
    assert.equal(readFileSync(join(dir, `o${EPS[e]}.txt`), 'utf8'), readFileSync(join(dir, `a${EPS[e]}.txt`), 'utf8'));
    assert.equal(readFileSync(join(dir, `o${EPS[e]}.txt`), 'utf8'), reference(d, EPS[e]!, ids).text);
  }
});

test('extract: text ids written from the file\'s own bytes (no BOM, no CR) equal the ids decoded one by one, with and without a final newline, and with a BOM or CRs', async () => {
  const dir = tmpFolder('extract-text');
  const n = 20_000;
  const d = data(n, 11);
  const strs = Array.from({ length: n }, (_, i) => (i % 7 === 0 ? `é-${i}-😀 \t x` : `doc/${String(i).padStart(9, '0')}.jsonl`));
  const variants: [string, string, boolean][] = [
    ['lf', strs.join('\n') + '\n', true],
    ['lf-no-final', strs.join('\n'), true],
    ['bom', '\ufeff' + strs.join('\n') + '\n', false],
    ['crlf', strs.join('\r\n') + '\r\n', false],
  ];
  for (const [name, text, fromBytes] of variants) {
    writeFileSync(join(dir, `${name}.txt`), text);
    const ids = readIds(join(dir, `${name}.txt`), { format: 'text', count: n });
    assert.equal(ids.joined !== undefined, fromBytes, `${name}: written from the file's bytes`);
    for (const fileFormat of ['posix', 'original'] as const) {
      const files = EPS.map((e) => join(dir, `${name}-${fileFormat}-${e}.txt`));
      await extractPrunedDataAll({ outputDir: dir, epsList: EPS, outputs: files, data: d, ids, fileFormat, threads: 3 });
      for (let e = 0; e < EPS.length; e++) {
        const ref = reference(d, EPS[e]!, idsFromStrings(strs)).text;
        assert.equal(readFileSync(files[e]!, 'utf8'), fileFormat === 'posix' ? ref : ref.replace(/\n$/, ''), `${name} ${fileFormat} eps ${EPS[e]}`);
      }
    }
  }
});

test('extract: an S id that is not UTF-8 is an input error naming the ids file and item; no partial output', async () => {
  const dir = tmpFolder('extract-bad');
  const n = 1000;
  const d = data(n, 5);
  d.M.fill(0);
  const raw = Buffer.alloc(n * 8);
  for (let i = 0; i < n; i++) raw.write(`r${i}`, i * 8, 'latin1');
  raw[123 * 8 + 1] = 0xff;
  writeFileSync(join(dir, 'ids.S8'), raw);
  const ids = readIds(join(dir, 'ids.S8'), { format: 'memmap', dtype: 'S8', count: n });
  const out = join(dir, 'kept.txt');
  await assert.rejects(
    extractPrunedDataAll({ outputDir: dir, epsList: [0.05], outputs: [out], data: d, ids }),
    (e: Error & { code?: string }) => e.code === 'ERR_INPUT' && e.message === `${join(dir, 'ids.S8')}: item 123 is not valid UTF-8`,
  );
  assert.equal(existsSync(out), false);
});
