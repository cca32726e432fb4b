// The structure the steps stand on: the backend chosen in one place (the native engine facade)
// and reported; one checked embeddings handle; native normalisation and keep order equal to
// independent references; CLI options and the version from their single sources.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { SynthDataset } from '../tools/synth.js';
import { computeCentroids, keepOrderOf, prepareEmbeddings, semdedup, assignAndSortClusters, SemDedupError } from '../src/index.js';
import { engineFor, loadNative } from '../src/native/index.js';
import { configSchema, type ConfigKeySpec } from '../src/config.js';
import { outputs } from '../src/layout.js';
import { ROOT, runCli, tmpFolder } from './helpers.js';

const N = 3000;
const D = 16;

function dataset(): { dir: string; file: string; X: Float32Array } {
  const dir = tmpFolder('engine');
  const X = new SynthDataset({ n: N, dim: D, clusters: 6, seed: 4 }).generate();
  const file = path.join(dir, 'emb.f32');
  writeFileSync(file, Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  return { dir, file, X };
}

test('engine: device auto runs each job where the engine facade decides, and every step says which (result, log, manifest)', async () => {
  const info = loadNative().info();
  const { dir, file } = dataset();
  const out = path.join(dir, 'out');
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const emb = await prepareEmbeddings({ path: file, dim: D }, { outputDir: out, normalize: 'auto' });
  try {
    const c = await computeCentroids({ embeddings: emb, outputDir: out, k: 6, spherical: true, device: 'auto', log });
    await assignAndSortClusters({ outputDir: out, spherical: true });
    const d = await semdedup({ embeddings: emb, outputDir: out, epsList: [0.05], device: 'auto', log });
    const ran: [string, 'cpu' | 'cuda' | undefined][] = [['k-means training', c.backend.train], ['assignment', c.backend.assign], ['max similarity', d.stats.backend]];
    for (const [job, backend] of ran) {
      // Without a usable GPU every job runs on the CPU, and the log gives the reason. With one, the
      // facade may still keep a job on the CPU (the GPU refused it): then the log says why.
      if (!info.cuda.available) {
        assert.equal(backend, 'cpu', `${job} without a usable GPU`);
        assert.ok(lines.includes(`${job}: CPU (${info.cuda.reason})`), `log names the backend and the reason for ${job}: ${lines.join(' | ')}`);
      } else if (backend === 'cpu') {
        assert.ok(lines.some((l) => l.startsWith(`${job}: CPU (`) && l.length > `${job}: CPU ()`.length), `${job} stayed on the CPU with a GPU here: the log gives the reason: ${lines.join(' | ')}`);
      } else {
        assert.equal(backend, 'cuda', job);
        assert.ok(lines.some((l) => l.startsWith(`${job}: CUDA (`)), `log names the GPU for ${job}: ${lines.join(' | ')}`);
      }
    }
    const m = JSON.parse(readFileSync(outputs.manifest(out), 'utf8')) as { steps: Record<string, { stats: Record<string, unknown> }> };
    assert.deepEqual(m.steps.cluster!.stats.backend, { train: c.backend.train, assign: c.backend.assign }, 'the manifest records the cluster backends that ran');
    assert.equal(m.steps.dedup!.stats.backend, d.stats.backend, 'the manifest records the dedup backend that ran');
  } finally {
    emb.close();
  }
});

const GPU_HERE = loadNative().info().cuda.available;

test('engine: the engine handle resolves the device once and reports it', () => {
  const info = loadNative().info();
  const cpu = engineFor('cpu');
  assert.equal(cpu.device, 'cpu');
  assert.equal(cpu.requested, 'cpu');
  assert.equal(cpu.note, '');
  assert.equal(engineFor('cpu'), cpu, 'one handle per choice and process');
  const auto = engineFor('auto');
  assert.equal(auto.requested, 'auto');
  assert.equal(auto.device, info.cuda.available ? 'cuda' : 'cpu', 'auto: the GPU exactly when the engine finds a usable one');
  assert.equal(auto.note, info.cuda.available ? '' : info.cuda.reason, 'auto on the CPU says why');
  if (info.cuda.available) assert.equal(engineFor('cuda').device, 'cuda');
  else assert.throws(() => engineFor('cuda'), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_BACKEND' && e.message.includes(info.cuda.reason));
});

test('engine: device cuda without a usable GPU fails with the real reason, before any output', { skip: GPU_HERE && 'a usable GPU is here: the refusal of device cuda cannot be reached' }, async () => {
  const info = loadNative().info();
  const { dir, file } = dataset();
  const out = path.join(dir, 'out');
  const emb = await prepareEmbeddings({ path: file, dim: D }, { outputDir: out, normalize: 'auto' });
  try {
    await assert.rejects(computeCentroids({ embeddings: emb, outputDir: out, k: 6, spherical: true, device: 'cuda' }), (e: unknown) => {
      assert.ok(e instanceof SemDedupError && e.code === 'ERR_BACKEND', String(e));
      assert.ok(e.message.includes(info.cuda.reason), `the message gives the reason: ${e.message}`);
      assert.ok(!/this build has no CUDA backend/.test(e.message) || !info.cuda.compiled, 'no wrong reason');
      return true;
    });
  } finally {
    emb.close();
  }
  // The CLI says the same and exits non-zero.
  const r = runCli(['cluster', '--set', `embeddings=${file}`, '--set', `dim=${D}`, '--set', `output_dir=${path.join(dir, 'cli')}`, '--set', 'k=6', '--device', 'cuda'], dir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(info.cuda.reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
});

/** The keep order as first written in TypeScript: splitmix64 per (seed, cluster), Fisher–Yates. */
function referenceKeepOrder(order: BigInt64Array, offsets: BigInt64Array, which: 'hard' | 'easy' | 'random', seed: number) {
  const keepOrder = new BigInt64Array(order.length);
  const keepIndex = new BigInt64Array(order.length);
  for (let c = 0; c + 1 < offsets.length; c++) {
    const b = Number(offsets[c]);
    const m = Number(offsets[c + 1]) - b;
    const idx = Array.from({ length: m }, (_, i) => (which === 'easy' ? m - 1 - i : i));
    if (which === 'random' && m > 1) {
      let s = BigInt.asUintN(64, (BigInt(seed) << 32n) ^ BigInt(c));
      const next = () => {
        s = BigInt.asUintN(64, s + 0x9e3779b97f4a7c15n);
        let z = s;
        z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
        z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
        z ^= z >> 31n;
        return Number(z >> 11n) / 2 ** 53;
      };
      for (let i = m - 1; i > 0; i--) {
        const j = Math.floor(next() * (i + 1));
        [idx[i], idx[j]] = [idx[j]!, idx[i]!];
      }
    }
    for (let i = 0; i < m; i++) {
      keepIndex[b + i] = BigInt(idx[i]!);
      keepOrder[b + i] = order[b + idx[i]!]!;
    }
  }
  return { keepOrder, keepIndex };
}

test('engine: the native keep order equals the reference for hard, easy and random (several seeds, threads)', async () => {
  const sizes = [0, 1, 2, 7, 1000, 3, 0, 4096, 5];
  const offsets = new BigInt64Array(sizes.length + 1);
  for (let c = 0; c < sizes.length; c++) offsets[c + 1] = offsets[c]! + BigInt(sizes[c]!);
  const n = Number(offsets[sizes.length]);
  const order = BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 7919) % n));
  for (const which of ['hard', 'easy', 'random'] as const)
    for (const seed of [1234, 0, -5, 2 ** 31 + 3])
      for (const threads of [1, 2]) {
        const got = await keepOrderOf(order, offsets, which, seed, threads);
        const ref = referenceKeepOrder(order, offsets, which, seed);
        assert.deepEqual(got.keepOrder, ref.keepOrder, `${which} seed ${seed} threads ${threads}: keep order`);
        assert.deepEqual(got.keepIndex, ref.keepIndex, `${which} seed ${seed}: keep index`);
      }
});

test('engine: normalize always writes the reference normalisation bit for bit', async () => {
  const { dir, file, X } = dataset();
  for (let i = 0; i < X.length; i++) X[i] = X[i]! * (1.5 + (i % 5));
  writeFileSync(file, Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  const out = path.join(dir, 'out');
  const emb = await prepareEmbeddings({ path: file, dim: D }, { outputDir: out, normalize: 'always' });
  try {
    assert.equal(emb.path, outputs.normalized(out));
    const got = emb.view() as Float32Array;
    for (let r = 0; r < N; r++) {
      let s = 0;
      for (let j = 0; j < D; j++) s += X[r * D + j]! * X[r * D + j]!;
      const inv = 1 / Math.sqrt(s);
      for (let j = 0; j < D; j++) {
        const want = Math.fround(X[r * D + j]! * inv);
        if (got[r * D + j] !== want) assert.fail(`row ${r} col ${j}: ${got[r * D + j]} != ${want}`);
      }
    }
  } finally {
    emb.close();
  }
});

test('engine: the CLI options and their help come from the schema; the version from package.json', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const v = runCli(['--version'], ROOT);
  assert.equal(v.stdout.trim(), pkg.version);
  for (const command of ['cluster', 'sort', 'dedup', 'extract', 'run']) {
    const h = runCli([command, '--help'], ROOT).stdout.replace(/\s+/g, ' ');
    for (const spec of configSchema as readonly ConfigKeySpec[]) {
      const flag = `--${spec.key.replace(/_/g, '-')}`;
      const listed = h.includes(`${flag} `) || h.includes(`${flag},`);
      assert.equal(listed, !!spec.cli?.includes(command as never), `${command} --help ${spec.cli?.includes(command as never) ? 'lists' : 'does not list'} ${flag}`);
      if (listed) assert.ok(h.includes(spec.description.slice(0, 40).replace(/\s+/g, ' ')), `${command} --help shows the schema's description of ${spec.key}`);
    }
  }
  const info = JSON.parse(runCli(['info', '--json'], ROOT).stdout) as { version: string };
  assert.equal(info.version, pkg.version, 'the addon reports the package version');
});
