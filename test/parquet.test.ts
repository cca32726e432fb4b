// Parquet in: files written here by hyparquet-writer (and re-encoded by DuckDB for zstd and gzip)
// are read by the engine through DuckDB, and must give the bytes of the same data as .npy; bad
// files are refused before anything is written; rank_by is checked against a float64 oracle; 64
// float16 .npy shards with a metadata Parquet per shard give the bytes of the concatenated data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { DuckDBInstance } from '@duckdb/node-api';
import { SynthDataset } from '../tools/synth.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { outputs } from '../src/layout.js';
import { runCli, tmpFolder } from './helpers.js';
import { assertSameOutputs, writeConfig } from './plan-helpers.js';
import { toHalf, writeSharded } from './shard-helpers.js';

interface PqData {
  ids?: (string | bigint)[];
  /** Rows (arrays, possibly ragged or null) of the embedding column. */
  emb?: (number[] | null)[];
  quality?: (number | null)[];
  half?: boolean;
  rowGroupSize?: number;
}

/** A Parquet file (hyparquet-writer) with the columns given: id, embedding (list of float or half), quality_score. */
function writeParquet(path: string, o: PqData): void {
  const schema: Record<string, unknown>[] = [];
  const columnData: { name: string; data: unknown[] }[] = [];
  if (o.ids) {
    const str = typeof o.ids[0] === 'string';
    schema.push(str ? { name: 'id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' } : { name: 'id', type: 'INT64', repetition_type: 'REQUIRED' });
    columnData.push({ name: 'id', data: o.ids });
  }
  if (o.emb) {
    const nullable = o.emb.some((r) => r === null) || o.emb.some((r) => r?.some((v) => v === null));
    schema.push({ name: 'embedding', repetition_type: nullable ? 'OPTIONAL' : 'REQUIRED', converted_type: 'LIST', num_children: 1 });
    schema.push({ name: 'list', repetition_type: 'REPEATED', num_children: 1 });
    schema.push(
      o.half
        ? { name: 'element', type: 'FIXED_LEN_BYTE_ARRAY', type_length: 2, logical_type: { type: 'FLOAT16' }, repetition_type: nullable ? 'OPTIONAL' : 'REQUIRED' }
        : { name: 'element', type: 'FLOAT', repetition_type: nullable ? 'OPTIONAL' : 'REQUIRED' },
    );
    columnData.push({ name: 'embedding', data: o.emb });
  }
  if (o.quality) {
    schema.push({ name: 'quality_score', type: 'DOUBLE', repetition_type: o.quality.includes(null) ? 'OPTIONAL' : 'REQUIRED' });
    columnData.push({ name: 'quality_score', data: o.quality });
  }
  parquetWriteFile({ filename: path, schema: [{ name: 'root', num_children: columnData.length }, ...schema], columnData, rowGroupSize: o.rowGroupSize ?? 1000 } as never);
}

function rowsOf(x: Float32Array | Uint16Array, n: number, d: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from(x.subarray(i * d, (i + 1) * d)));
}

/** Re-encodes a Parquet file with DuckDB (another writer), compression `codec`. */
async function recode(src: string, dst: string, codec: string): Promise<void> {
  const inst = await DuckDBInstance.create(':memory:');
  const con = await inst.connect();
  await con.run(`COPY (SELECT * FROM read_parquet('${src}')) TO '${dst}' (FORMAT parquet, COMPRESSION ${codec}, ROW_GROUP_SIZE 700)`);
  con.closeSync();
  inst.closeSync();
}

function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test('Parquet embeddings and ids (snappy, zstd, gzip; float and half float; string and integer ids) give the bytes of the same data as .npy', async () => {
  const dir = tmpFolder('pq-same');
  try {
    const n = 3000;
    const d = 24;
    const ds = new SynthDataset({ n, dim: d, clusters: 12, seed: 5 });
    const x = ds.generate();
    const ids = Array.from({ length: n }, (_, i) => `doc-${(i * 7919) % n}`);
    writeNpy(join(dir, 'x.npy'), x, { shape: [n, d] });
    writeFileSync(join(dir, 'ids.txt'), ids.join('\n'));
    const base = { k: 12, spherical: true, eps_list: [0.01, 0.05, 0.1] };
    const ref = join(dir, 'ref');
    let r = runCli(['run', '-c', writeConfig(dir, 'ref.yaml', { ...base, embeddings: join(dir, 'x.npy'), ids: join(dir, 'ids.txt'), output_dir: ref }), '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    writeParquet(join(dir, 'snappy.parquet'), { ids, emb: rowsOf(x, n, d) });
    await recode(join(dir, 'snappy.parquet'), join(dir, 'zstd.parquet'), 'zstd');
    await recode(join(dir, 'snappy.parquet'), join(dir, 'gzip.parquet'), 'gzip');
    for (const f of ['snappy', 'zstd', 'gzip']) {
      const out = join(dir, `out-${f}`);
      // `embeddings: data.parquet` alone: the ids come from its `id` column
      r = runCli(['run', '-c', writeConfig(dir, `${f}.yaml`, { ...base, embeddings: join(dir, `${f}.parquet`), output_dir: out }), '-q'], dir, 300_000);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(readNpy(join(out, 'semdedup', 'import', 'embeddings.npy')).data, x, `${f}: the converted rows`);
      for (const eps of [0.01, 0.05, 0.1]) assert.ok(readFileSync(join(out, `kept_eps${eps}.txt`)).equals(readFileSync(join(ref, `kept_eps${eps}.txt`))), `${f}: kept ids at eps ${eps}`);
      for (const p of [outputs.M, outputs.keepOrder, outputs.centroids, outputs.nearest])
        assert.ok(readFileSync(p(out)).equals(readFileSync(p(ref))), `${f}: ${p(out)}`);
      // after the run: the same config again converts nothing and extracts any eps
      r = runCli(['extract', '-c', join(dir, `${f}.yaml`), '--eps', '0.03', '-o', join(dir, `${f}-0.03.txt`)], dir);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /converting/);
    }
    // half floats: a float16 .npy; integer ids from another file
    const h = readNpy(join(dir, 'x.npy')).data as Float32Array;
    const half = new Uint16Array(n * d);
    for (let i = 0; i < half.length; i++) half[i] = toHalf(h[i]!);
    writeParquet(join(dir, 'half.parquet'), { emb: rowsOf(Float32Array.from(half, fromHalf), n, d), half: true });
    writeParquet(join(dir, 'intids.parquet'), { ids: Array.from({ length: n }, (_, i) => BigInt(i * 3)) });
    const out = join(dir, 'out-half');
    r = runCli(['import', '-c', writeConfig(dir, 'half.yaml', { ...base, embeddings: join(dir, 'half.parquet'), ids: join(dir, 'intids.parquet'), output_dir: out })], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const conv = readNpy(join(out, 'semdedup', 'import', 'embeddings.npy'));
    assert.equal(conv.header.descr, '<f2');
    assert.deepEqual(conv.data, half);
    assert.equal(readFileSync(join(out, 'semdedup', 'import', 'ids.txt'), 'utf8').split('\n')[5], '15');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad Parquet files are refused before anything is written, naming the file, the row group and the column', () => {
  const dir = tmpFolder('pq-bad');
  try {
    const n = 2500;
    const d = 8;
    const good = Array.from({ length: n }, (_, i) => Array.from({ length: d }, (_, j) => (j === i % d ? 1 : 0)));
    const ids = Array.from({ length: n }, (_, i) => `r${i}`);
    const cases: [string, () => void, RegExp][] = [
      ['not parquet', () => writeFileSync(join(dir, 'bad.parquet'), Buffer.alloc(4000, 7)), /not a Parquet file/],
      ['missing column', () => writeParquet(join(dir, 'bad.parquet'), { ids, quality: ids.map(() => 1) }), /no column 'embedding'/],
      ['ragged lists', () => writeParquet(join(dir, 'bad.parquet'), { ids, emb: good.map((r, i) => (i === 2100 ? r.slice(1) : r)) }), /row group 2, column 'embedding', row 2100: a list of 7 values, expected 8/],
      ['null embedding', () => writeParquet(join(dir, 'bad.parquet'), { ids, emb: good.map((r, i) => (i === 1500 ? null : r)) }), /row group 1, column 'embedding', row 1500: the embedding is null/],
      ['null value', () => writeParquet(join(dir, 'bad.parquet'), { ids, emb: good.map((r, i) => (i === 10 ? [null as unknown as number, ...r.slice(1)] : r)) }), /row group 0, column 'embedding', row 10: the list holds null values/],
      ['NaN', () => writeParquet(join(dir, 'bad.parquet'), { ids, emb: good.map((r, i) => (i === 2400 ? [...r.slice(0, 3), NaN, ...r.slice(4)] : r)) }), /row group 2, column 'embedding', row 2400: value 3 is NaN/],
    ];
    for (const [what, make, msg] of cases) {
      make();
      const out = join(dir, `out-${what.replace(/ /g, '-')}`);
      const r = runCli(['run', '-c', writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'bad.parquet'), k: 4, output_dir: out }), '-q'], dir);
      assert.notEqual(r.code, 0, `${what}: refused`);
      assert.match(r.stderr, /bad\.parquet/, `${what}: names the file: ${r.stderr}`);
      assert.match(r.stderr, msg, `${what}: ${r.stderr}`);
      assert.equal(existsSync(out), false, `${what}: nothing written`);
    }
    // a metadata file whose ranking column holds a null
    writeParquet(join(dir, 'emb.parquet'), { ids, emb: good });
    writeParquet(join(dir, 'meta.parquet'), { ids, quality: ids.map((_, i) => (i === 1234 ? null : i / n)) });
    const out = join(dir, 'out-meta');
    const r = runCli(['run', '-c', writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'emb.parquet'), ids: join(dir, 'meta.parquet'), k: 4, output_dir: out }), '--rank-by', 'quality_score:desc', '-q'], dir);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /meta\.parquet: row group 1, column 'quality_score', row 1234: the value is null/);
    assert.equal(existsSync(out), false, 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** float64 M of each keep-order position: the largest dot product with an earlier member, clamped at 0. */
function refM(x: Float32Array, d: number, keepOrder: BigInt64Array, offsets: BigInt64Array): Float64Array {
  const M = new Float64Array(keepOrder.length);
  for (let c = 0; c + 1 < offsets.length; c++) {
    const b = Number(offsets[c]!);
    const e = Number(offsets[c + 1]!);
    for (let j = b; j < e; j++) {
      let best = 0;
      const rj = Number(keepOrder[j]!) * d;
      for (let i = b; i < j; i++) {
        const ri = Number(keepOrder[i]!) * d;
        let s = 0;
        for (let t = 0; t < d; t++) s += x[ri + t]! * x[rj + t]!;
        if (s > best) best = s;
      }
      M[j] = best;
    }
  }
  return M;
}

test('rank_by quality_score:desc: each cluster in quality order (ties: the distance order, then the row); M and decisions against float64; the best copy of each duplicate group kept', () => {
  const dir = tmpFolder('pq-rank');
  try {
    const n = 4000;
    const d = 16;
    const ds = new SynthDataset({ n, dim: d, clusters: 10, seed: 9, dupFraction: 0.3 });
    const x = ds.generate();
    // quality on a coarse grid: many ties, broken by the distance order
    const quality = Array.from({ length: n }, (_, i) => ((i * 2654435761) >>> 0) % 17 / 16);
    const ids = Array.from({ length: n }, (_, i) => `q${i}`);
    writeParquet(join(dir, 'data.parquet'), { ids, emb: rowsOf(x, n, d), quality });
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'data.parquet'), k: 10, spherical: true, eps_list: [0.05, 0.1], output_dir: out });
    const r = runCli(['run', '-c', cfg, '--rank-by', 'quality_score:desc', '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const order = readNpy(outputs.order(out)).data as BigInt64Array;
    const offsets = readNpy(outputs.offsets(out)).data as BigInt64Array;
    const keepOrder = readNpy(outputs.keepOrder(out)).data as BigInt64Array;
    const dist = readNpy(outputs.dist(out)).data as Float32Array;
    const nearest = readNpy(outputs.nearest(out)).data as BigInt64Array;
    // Oracle: per cluster, members by quality desc, then the distance key (1 - inner product,
    // hardest first as keep_hard), then the row.
    const k = offsets.length - 1;
    for (let c = 0; c < k; c++) {
      const b = Number(offsets[c]!);
      const e = Number(offsets[c + 1]!);
      const members: number[] = [];
      for (let i = 0; i < n; i++) if (Number(nearest[i]!) === c) members.push(i);
      assert.equal(members.length, e - b);
      members.sort((p, q) => quality[q]! - quality[p]! || Math.fround(1 - dist[q]!) - Math.fround(1 - dist[p]!) || p - q);
      assert.deepEqual(Array.from(keepOrder.subarray(b, e), Number), members, `cluster ${c}: keep order`);
      assert.deepEqual(new Set(Array.from(order.subarray(b, e), Number)), new Set(members));
    }
    const M = readNpy(outputs.M(out)).data as Float64Array;
    const ref = refM(x, d, keepOrder, offsets);
    const kept = new Set(readFileSync(join(out, 'kept_eps0.1.txt'), 'utf8').split('\n'));
    for (let j = 0; j < n; j++) {
      assert.ok(Math.abs(M[j]! - ref[j]!) <= 1e-5, `position ${j}: M ${M[j]} vs float64 ${ref[j]}`);
      if (Math.abs(ref[j]! - 0.9) > 1e-5) assert.equal(kept.has(ids[Number(keepOrder[j]!)]!), !(ref[j]! > 0.9), `position ${j}: decision`);
    }
    // in every group of exact copies, the kept one has the highest quality of the group
    const byBytes = new Map<string, number[]>();
    for (let i = 0; i < n; i++) {
      const key = Buffer.from(x.buffer, i * d * 4, d * 4).toString('hex');
      byBytes.set(key, [...(byBytes.get(key) ?? []), i]);
    }
    let groups = 0;
    let keptGroups = 0;
    for (const rows of byBytes.values()) {
      if (rows.length < 2) continue;
      groups++;
      // the copy first in keep order has the group's best quality; every later copy is removed
      // (M = 1), so a copy is kept only when it is that best one
      const pos = new Map(Array.from(keepOrder, (r, p) => [Number(r), p]));
      const first = rows.reduce((a, b) => (pos.get(a)! < pos.get(b)! ? a : b));
      assert.equal(quality[first], Math.max(...rows.map((i) => quality[i]!)), 'the best copy comes first');
      const keptRows = rows.filter((i) => kept.has(ids[i]!));
      assert.ok(keptRows.length === 0 || (keptRows.length === 1 && keptRows[0] === first), 'only the best copy may be kept');
      if (keptRows.length === 1) keptGroups++;
    }
    assert.ok(groups > 10 && keptGroups > groups / 2, `exact-copy groups in the data: ${groups}, with their best copy kept: ${keptGroups}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('64 float16 .npy shards with a metadata Parquet per shard (ids, quality): the bytes of the concatenated data, single process and --executor local --tasks 3', async () => {
  const dir = tmpFolder('pq-shards');
  try {
    const n = 20_000;
    const s = writeSharded(dir, n, 32, 64);
    const ids = Array.from({ length: n }, (_, i) => `img_${String((i * 7919) % n).padStart(6, '0')}.jpg`);
    const quality = Array.from({ length: n }, (_, i) => ((i * 40503) % 1000) / 1000);
    mkdirSync(join(dir, 'metadata'));
    let row = 0;
    s.sizes.forEach((m, i) => {
      writeParquet(join(dir, 'metadata', `metadata_${String(i).padStart(4, '0')}.parquet`), { ids: ids.slice(row, row + m), quality: quality.slice(row, row + m), rowGroupSize: 100 });
      row += m;
    });
    writeParquet(join(dir, 'metadata.parquet'), { ids, quality });
    const base = { k: 20, spherical: true, eps_list: [0.01, 0.05, 0.1], normalize: 'never', rank_by: '"quality_score:desc"' };
    const single = join(dir, 'single');
    let r = runCli(['run', '-c', writeConfig(dir, 'one.yaml', { ...base, embeddings: s.whole, ids: join(dir, 'metadata.parquet'), output_dir: single }), '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const shardCfg = writeConfig(dir, 'shards.yaml', { ...base, embeddings: join(dir, 'emb'), ids: join(dir, 'metadata'), output_dir: join(dir, 'sharded') });
    r = runCli(['run', '-c', shardCfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    const skipImport = (a: string, b: string) => {
      // the converted inputs hold the same ids and values; every other file compared byte for byte
      for (const f of ['ids.txt', 'rank_quality_score.npy'])
        assert.ok(readFileSync(join(a, 'semdedup', 'import', f)).equals(readFileSync(join(b, 'semdedup', 'import', f))), f);
      return assertSameOutputs(a, b);
    };
    const compared = skipImport(single, join(dir, 'sharded'));
    assert.ok(compared.includes('kept_eps0.05.txt'));
    r = runCli(['run', '-c', shardCfg, '--set', `output_dir=${join(dir, 'planned')}`, '--executor', 'local', '--tasks', '3', '--workers', '2'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    skipImport(single, join(dir, 'planned'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('extract --format parquet: one row per input row (or per removed row), read back by another Parquet implementation (hyparquet) with the right rows', async () => {
  const { parquetReadObjects, asyncBufferFromFile } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const dir = tmpFolder('pq-out');
  try {
    const n = 3000;
    const d = 16;
    const ds = new SynthDataset({ n, dim: d, clusters: 8, seed: 4, dupFraction: 0.3 });
    writeNpy(join(dir, 'x.npy'), ds.generate(), { shape: [n, d] });
    const ids = Array.from({ length: n }, (_, i) => `id,"${i}"`);
    writeFileSync(join(dir, 'ids.txt'), ids.join('\n'));
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: join(dir, 'x.npy'), ids: join(dir, 'ids.txt'), k: 8, spherical: true, eps_list: [0.05, 0.1], output_dir: out });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    r = runCli(['extract', '-c', cfg, '--eps', '0.07', '-o', join(dir, 'kept0.07.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    const keepOrder = readNpy(outputs.keepOrder(out)).data as BigInt64Array;
    const nearest = readNpy(outputs.nearest(out)).data as BigInt64Array;
    const M = readNpy(outputs.M(out)).data as Float64Array;
    const Mrow = readNpy(outputs.Marg(out)).data as BigInt64Array;
    const keptAt = (f: string) => new Set(readFileSync(f, 'utf8').split('\n'));
    const kept = { 0.05: keptAt(join(out, 'kept_eps0.05.txt')), 0.1: keptAt(join(out, 'kept_eps0.1.txt')), 0.07: keptAt(join(dir, 'kept0.07.txt')) };
    for (const removed of [false, true]) {
      const file = join(dir, removed ? 'removed.parquet' : 'all.parquet');
      r = runCli(['extract', '-c', cfg, '--eps', '0.07', '--format', 'parquet', '-o', file, ...(removed ? ['--removed'] : []), '-q'], dir);
      assert.equal(r.code, 0, r.stderr);
      const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors })) as Record<string, unknown>[];
      const want = Array.from(keepOrder, (row, p) => ({ row: Number(row), p })).filter((x) => !removed || !kept[0.07].has(ids[x.row]!));
      assert.equal(rows.length, want.length, removed ? 'one row per removed row' : 'one row per input row');
      assert.ok(want.length > 100 && (removed ? want.length < n : want.length === n));
      rows.forEach((t, i) => {
        const { row, p } = want[i]!;
        assert.equal(t.row, BigInt(row), `table row ${i}: keep order`);
        assert.equal(t.id, ids[row]);
        assert.equal(t.cluster, Number(nearest[row]!));
        assert.equal(t.M, M[p]);
        assert.equal(t.nearest_earlier_id, Mrow[p]! < 0n ? null : ids[Number(Mrow[p]!)]);
        for (const e of [0.05, 0.07, 0.1] as const) assert.equal(t[`keep_eps${e}`], kept[e].has(ids[row]!), `row ${row}: keep at eps ${e}`);
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rank_by in a config: a mapping or column:order; a bad order or key is a config error naming rank_by', async () => {
  const { loadConfigFiles } = await import('../src/config.js');
  const dir = tmpFolder('pq-cfg');
  try {
    const f = join(dir, 'c.yaml');
    writeFileSync(f, 'rank_by: {column: quality_score, order: asc}\n');
    assert.deepEqual(loadConfigFiles([f]).rankBy, { column: 'quality_score', order: 'asc' });
    writeFileSync(f, 'rank_by: aesthetic:desc\n');
    assert.deepEqual(loadConfigFiles([f]).rankBy, { column: 'aesthetic', order: 'desc' });
    writeFileSync(f, 'rank_by: {column: q}\n');
    assert.deepEqual(loadConfigFiles([f]).rankBy, { column: 'q', order: 'desc' });
    for (const bad of ['rank_by: {column: q, order: up}', 'rank_by: {col: q}', 'rank_by: [q]'] as const) {
      writeFileSync(f, bad + '\n');
      assert.throws(() => loadConfigFiles([f]), (e: Error & { key?: string }) => e.key === 'rank_by', bad);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SQL quoting: any path or column name (quotes, semicolons, newlines, comment marks) comes back from DuckDB as it was, never read as SQL', async () => {
  const fc = (await import('fast-check')).default;
  const { sqlIdent, sqlString } = await import('../src/io/parquet.js');
  const con = await (await DuckDBInstance.create(':memory:')).connect();
  const pieces = ["'", '"', "''", ';', '--', '/*', '*/', '\n', ' ', 'x', "'); DROP TABLE t; --", '\\', 'é', '$1'];
  const samples = fc.sample(fc.array(fc.constantFrom(...pieces), { minLength: 1, maxLength: 6 }).map((a) => a.join('')), { numRuns: 200, seed: 20261206 });
  for (const s of samples) {
    const r = await con.runAndReadAll(`SELECT ${sqlString(s)} AS ${sqlIdent(s)}`);
    assert.deepEqual(r.columnNames(), [s], JSON.stringify(s));
    assert.equal(r.getRows()[0]![0], s, JSON.stringify(s));
  }
});
