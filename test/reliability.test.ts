// Reliability: each test names the behaviour it checks against an independent expectation (a
// fresh uninterrupted run, the bytes of a file before and after, Debian's PyYAML): files of different runs are never paired, ids that cannot be written one per
// line are refused up front, memory does not grow with threads, no hang under /proc, no temp
// files left, every bad input refused before anything is created, one run per folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import * as path from 'node:path';

import { loadConfigFiles } from '../src/config.js';
import { SemDedupError } from '../src/errors.js';
import { makeDir } from '../src/io/atomic.js';
import { writeNpy } from '../src/io/npy.js';
import { lockOutputDir } from '../src/lock.js';
import { capThreads, THREADS_PER_CORE_MAX, validateInputs } from '../src/validate.js';
import { parseYamlLikePyYAML } from '../src/io/yaml11.js';
import { ALGORITHM_VERSION } from '../src/steps/common.js';
import { CLI, ROOT, runCli, tmpFolder } from './helpers.js';
import { DIM, K, N, digest, listFiles, makeData, runArgs, tempFiles } from './rel-helpers.js';

function ok(args: string[], cwd: string, what: string): string {
  const r = runCli(args, cwd, 120_000);
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  return r.stdout + r.stderr;
}

/** A typed CLI error (exit 1 or 2, no stack) whose message holds every part. */
function refused(args: string[], cwd: string, parts: (string | RegExp)[], what: string, timeout = 60_000): string {
  const r = runCli(args, cwd, timeout);
  assert.ok(r.code === 1 || r.code === 2, `${what}: expected a typed error (exit 1 or 2), got ${r.code} (signal? timeout?)\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error|    at /, `${what}: a stack trace leaked\n${r.stderr}`);
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(r.stderr.includes(p), `${what}: the message should mention ${JSON.stringify(p)}\n${r.stderr}`);
    else assert.match(r.stderr, p, `${what}\n${r.stderr}`);
  }
  return r.stderr;
}

function kept(out: string, eps = 0.01): string[] {
  return readFileSync(path.join(out, `kept_eps${eps}.txt`), 'utf8').split('\n');
}

// ---------------------------------------------------------------------------------------------
// Extract never pairs files of different runs; readers accept only committed files.

test('extract refuses a keep order and M that no dedup step committed together (interrupted rewrite)', () => {
  const d = makeData('rel1');
  const hard = path.join(d.dir, 'hard');
  const easy = path.join(d.dir, 'easy');
  ok(['run', ...runArgs(d, hard)], d.dir, 'run hard');
  ok(['run', ...runArgs(d, easy, ['--set', 'which_to_keep=easy'])], d.dir, 'run easy');
  const easyKept = kept(easy);
  // An interrupted rerun with which_to_keep=easy that had rewritten keep_order.npy but not M.npy.
  copyFileSync(path.join(easy, 'semdedup', 'keep_order.npy'), path.join(hard, 'semdedup', 'keep_order.npy'));
  const out = path.join(d.dir, 'kept.txt');
  for (const which of ['easy', 'hard']) {
    const r = runCli(['extract', ...runArgs(d, hard, ['--set', `which_to_keep=${which}`]), '--eps', '0.01', '--output', out], d.dir);
    assert.notEqual(r.code, 0, `extract (${which}) must refuse a keep_order.npy the dedup step did not commit; it wrote ${existsSync(out) ? 'a list' : 'nothing'}`);
    assert.match(r.stderr, /keep_order\.npy is not the file the dedup step completed.*rerun semdedup dedup/);
  }
  assert.ok(!existsSync(out), 'no list written');
  // The rerun repairs the folder: the same list as the uninterrupted easy run.
  ok(['run', ...runArgs(d, hard, ['--set', 'which_to_keep=easy'])], d.dir, 'rerun easy');
  assert.deepEqual(kept(hard), easyKept);
});

test('extract refuses results committed for other parameters (interrupted before any rewrite)', () => {
  const d = makeData('rel1b');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run hard');
  const r = runCli(['extract', ...runArgs(d, out, ['--set', 'which_to_keep=easy']), '--eps', '0.01', '--output', path.join(d.dir, 'k.txt')], d.dir);
  assert.notEqual(r.code, 0, 'extract with which_to_keep=easy must not return the hard result');
  assert.match(r.stderr, /ran with whichToKeep = "hard", not the requested "easy".*rerun semdedup dedup/);
  // The same parameters are accepted.
  ok(['extract', ...runArgs(d, out, ['--set', 'which_to_keep=hard']), '--eps', '0.01', '--output', path.join(d.dir, 'k.txt')], d.dir, 'extract hard');
  assert.deepEqual(readFileSync(path.join(d.dir, 'k.txt'), 'utf8').split('\n'), kept(out));
});

test('manifest: an edit that keeps the size and the mtime is seen (strong stamps)', () => {
  const d = makeData('relstamp');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const M = path.join(out, 'semdedup', 'M.npy');
  const st = statSync(M, { bigint: true });
  const b = readFileSync(M);
  b[b.length - 1] ^= 0x40; // same size
  writeFileSync(M, b);
  const ns = st.mtimeNs % 1_000_000_000n;
  const t = spawnSync('touch', ['-m', '-d', `@${st.mtimeNs / 1_000_000_000n}.${String(ns).padStart(9, '0')}`, M]); // same mtime, to the ns
  assert.equal(t.status, 0);
  assert.equal(statSync(M, { bigint: true }).mtimeNs, st.mtimeNs);
  refused(['extract', ...runArgs(d, out), '--eps', '0.01'], d.dir, ['M.npy is not the file the dedup step completed', 'rerun semdedup dedup'], 'edited M.npy');
});

test('manifest: existing centroids are reused only for the embeddings and k-means parameters they came from', () => {
  const d = makeData('relcent');
  const out = path.join(d.dir, 'out');
  const r1 = JSON.parse(runCli(['cluster', ...runArgs(d, out), '--json'], d.dir).stdout) as { centroidsFrom: string };
  assert.equal(r1.centroidsFrom, 'trained');
  const r2 = JSON.parse(runCli(['cluster', ...runArgs(d, out), '--json'], d.dir).stdout) as { centroidsFrom: string; assignmentReused: boolean };
  assert.equal(r2.centroidsFrom, 'reused');
  assert.equal(r2.assignmentReused, true);
  // Another seed: the centroids were not made with it.
  const r3 = JSON.parse(runCli(['cluster', ...runArgs(d, out, ['--set', 'seed=99']), '--json'], d.dir).stdout) as { centroidsFrom: string };
  assert.equal(r3.centroidsFrom, 'trained', 'a new seed must retrain');
  // Changed embeddings (other rows, same size): retrain.
  const other = makeData('relcent2', { seed: 8 });
  copyFileSync(other.emb, d.emb);
  const r4 = JSON.parse(runCli(['cluster', ...runArgs(d, out, ['--set', 'seed=99']), '--json'], d.dir).stdout) as { centroidsFrom: string };
  assert.equal(r4.centroidsFrom, 'trained', 'changed embeddings must retrain');
  // The result equals a fresh folder's.
  const fresh = path.join(d.dir, 'fresh');
  ok(['cluster', ...runArgs(d, fresh, ['--set', 'seed=99'])], d.dir, 'fresh cluster');
  for (const f of ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy'])
    assert.ok(readFileSync(path.join(out, f)).equals(readFileSync(path.join(fresh, f))), `${f} differs from a fresh run`);
});

test('manifest: records of an engine with other numerical rules (no algorithm version, or another) are not reused', () => {
  const d = makeData('relalgo');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const manifestPath = path.join(out, 'semdedup', 'manifest.json');
  const STEPS = ['train', 'cluster', 'sort', 'dedup'];
  const original = readFileSync(manifestPath, 'utf8');
  const m0 = JSON.parse(original) as { steps: Record<string, { params: Record<string, unknown> }> };
  for (const s of STEPS) assert.equal(m0.steps[s]?.params.algorithm, ALGORITHM_VERSION, `the ${s} record carries the algorithm version`);
  const want = ['kmeans_centroids.npy', 'nearest_cent.npy', 'dist_to_cent.npy', 'semdedup/M.npy', 'semdedup/M_row.npy', 'semdedup/keep_order.npy'].map((f) => [f, readFileSync(path.join(out, f))] as const);
  // The same folder as an older engine left it: its records without the version, then with an older one.
  for (const version of [undefined, ALGORITHM_VERSION - 1]) {
    const m = JSON.parse(original) as typeof m0;
    for (const s of STEPS) {
      if (version === undefined) delete m.steps[s]!.params.algorithm;
      else m.steps[s]!.params.algorithm = version;
    }
    writeFileSync(manifestPath, JSON.stringify(m, null, 2) + '\n');
    const log = runCli(['run', ...runArgs(d, out).filter((a) => a !== '-q')], d.dir).stderr;
    assert.doesNotMatch(log, /centroids: reusing|assignment: up to date|sort: up to date|dedup: up to date/, `version ${String(version)}: nothing reused\n${log}`);
    assert.match(log, /k-means: k=/, `version ${String(version)}: k-means trains again`);
    const m2 = JSON.parse(readFileSync(manifestPath, 'utf8')) as typeof m0;
    for (const s of STEPS) assert.equal(m2.steps[s]?.params.algorithm, ALGORITHM_VERSION, `${s} recorded again with the current version`);
    for (const [f, h] of want) assert.ok(readFileSync(path.join(out, f)).equals(h), `${f}: the same bytes as the first run`);
  }
  // With the current version everything is reused.
  const log = runCli(['run', ...runArgs(d, out).filter((a) => a !== '-q')], d.dir).stderr;
  assert.match(log, /centroids: reusing/);
  assert.match(log, /dedup: up to date/);
});

test('every step whose inputs, outputs and parameters are unchanged is skipped', () => {
  const d = makeData('relskip');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const files = ['kmeans_centroids.npy', 'nearest_cent.npy', 'semdedup/cluster_order.npy', 'semdedup/M.npy', 'semdedup/keep_order.npy'];
  const ino = files.map((f) => statSync(path.join(out, f)).ino);
  const log = runCli(['run', ...runArgs(d, out).filter((a) => a !== '-q')], d.dir).stderr;
  assert.match(log, /centroids: reusing/);
  assert.match(log, /assignment: up to date/);
  assert.match(log, /sort: up to date/);
  assert.match(log, /dedup: up to date/);
  assert.deepEqual(files.map((f) => statSync(path.join(out, f)).ino), ino, 'the step outputs were not rewritten');
  // One changed parameter reruns that step and the ones after it, not the ones before.
  const log2 = runCli(['run', ...runArgs(d, out, ['--set', 'keep_hard=false']).filter((a) => a !== '-q')], d.dir).stderr;
  assert.match(log2, /assignment: up to date/);
  assert.doesNotMatch(log2, /sort: up to date|dedup: up to date/);
});

// ---------------------------------------------------------------------------------------------
// Ids that cannot be written one per line are refused before any work.

test('ids with a newline, a carriage return, a NUL, invalid UTF-8 or nothing are refused before anything is written', () => {
  const cases: [string, Buffer, RegExp][] = [
    ['newline', Buffer.from('evil\nimg_00006.jpg'), /row 5 .*holds a newline/],
    ['carriage return', Buffer.from('evil\rimg_00006.jpg'), /row 5 .*holds a carriage return/],
    ['NUL', Buffer.from('evil\0img_00006.jpg'), /row 5 .*holds a NUL byte/],
    ['invalid UTF-8', Buffer.from([0x69, 0x6d, 0xff, 0xfe, 0x67]), /row 5 is not valid UTF-8/],
    ['empty', Buffer.alloc(0), /row 5 is empty/],
  ];
  for (const [what, bad, msg] of cases) {
    const d = makeData('rel2');
    const raw = readFileSync(d.ids);
    raw.fill(0, 5 * 24, 6 * 24);
    bad.copy(raw, 5 * 24);
    writeFileSync(d.ids, raw);
    const out = path.join(d.dir, 'out');
    refused(['run', ...runArgs(d, out)], d.dir, [d.ids, msg], `S24 id with ${what}`);
    assert.ok(!existsSync(out), `${what}: the output folder was created`);
  }
  // A U40 .npy holding a newline.
  const d = makeData('rel2u');
  const ids = d.idList.slice();
  ids[6] = 'evil\nimg_00006.jpg';
  const npy = path.join(d.dir, 'data', 'paths.npy');
  writeNpy(npy, ids, { strKind: 'U', width: 40 });
  const out = path.join(d.dir, 'out');
  refused(['run', ...runArgs(d, out).map((a) => (a === `ids=${d.ids}` ? `ids=${npy}` : a === 'ids_dtype=S24' ? 'ids_format=npy' : a))], d.dir, [npy, /row 6 .*holds a newline/], 'U40 id with a newline');
  assert.ok(!existsSync(out));
});

// ---------------------------------------------------------------------------------------------
// Memory does not grow with threads.

test('dedup memory is bounded by the tiles, not by a fixed scratch per thread', () => {
  // 500 × 8 rows in 8 clusters, 64 threads: peak RSS growth measured in a child process.
  const script = `
    import { engineFor, loadNative } from ${JSON.stringify(path.join(ROOT, 'dist/src/native/index.js'))};
    import { writeFileSync } from 'node:fs';
    const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(require_status())[1]) * 1024;
    function require_status() { return (await_import_fs()).readFileSync('/proc/self/status', 'utf8'); }
    function await_import_fs() { return globalThis.__fs; }
    globalThis.__fs = await import('node:fs');
    const n = 500, d = 8, k = 8;
    const X = new Float32Array(n * d);
    let s = 1;
    for (let i = 0; i < n; i++) { let q = 0; for (let j = 0; j < d; j++) { s = (s * 48271) % 2147483647; X[i*d+j] = s / 2147483647 - 0.5; q += X[i*d+j] ** 2; } for (let j = 0; j < d; j++) X[i*d+j] /= Math.sqrt(q); }
    const file = process.argv[2];
    writeFileSync(file, Buffer.from(X.buffer));
    const addon = loadNative();
    const emb = new addon.Embeddings({ path: file, offset: 0, n, d, dtype: 'float32', writable: false });
    const order = BigInt64Array.from({ length: n }, (_, i) => BigInt(i));
    const offsets = BigInt64Array.from({ length: k + 1 }, (_, c) => BigInt(Math.round((c * n) / k)));
    const M = new Float64Array(n), arg = new BigInt64Array(n);
    const before = hwm();
    await addon.maxSimilarity({ emb, order, offsets, M, arg, thresholds: [0.99], threads: 64, engine: engineFor('cpu') });
    process.stdout.write(JSON.stringify({ grew: hwm() - before }));
  `;
  const dir = tmpFolder('rel3');
  const file = path.join(dir, 'run.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, [file, path.join(dir, 'x.f32')], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const { grew } = JSON.parse(r.stdout) as { grew: number };
  // 64 threads × 33 MB of fixed scratch was 2.1 GB; the tiles of 8 clusters of ~63 rows need < 1 MB.
  assert.ok(grew < 64 * 2 ** 20, `peak RSS grew by ${(grew / 2 ** 20).toFixed(1)} MB for a 500 × 8 input at 64 threads`);
});

test('threads are capped at a multiple of the cores, with a warning', () => {
  const lines: string[] = [];
  const cap = THREADS_PER_CORE_MAX * cpus().length;
  assert.equal(capThreads(10_000, (l) => lines.push(l)), cap);
  assert.match(lines[0] ?? '', new RegExp(`warning: threads 10000 is more than ${THREADS_PER_CORE_MAX} × the ${cpus().length} cores; using ${cap}`));
  assert.equal(capThreads(cap, (l) => lines.push(l)), cap);
  assert.equal(capThreads(0), 0);
  assert.equal(lines.length, 1);
  const d = makeData('rel3b');
  const out = path.join(d.dir, 'out');
  const r = runCli(['run', ...runArgs(d, out).filter((a) => a !== '-q' && a !== '--threads' && a !== '2'), '--threads', '10000'], d.dir, 120_000);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /warning: threads 10000 is more than/);
});

// ---------------------------------------------------------------------------------------------
// No hang on a folder that cannot be created.

test('output_dir under /proc is refused at once (no endless mkdir)', () => {
  const d = makeData('rel4');
  refused(['run', ...runArgs(d, '/proc/semdedup_out')], d.dir, ['/proc/semdedup_out', 'output folder'], 'output under /proc', 30_000);
  assert.throws(() => makeDir('/proc/semdedup_out/a/b'), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_OUTPUT');
});

// ---------------------------------------------------------------------------------------------
// Temp files of dead writers are removed on rerun.

test('temp files left by a killed writer are removed by the next run, wherever they are in the folder', () => {
  const d = makeData('rel5');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // a pid that has exited
  const stale = ['kmeans_centroids.npy', 'nearest_cent.npy', 'semdedup/M.npy', 'semdedup/manifest.json', 'kept_eps0.01.txt', 'semdedup/keep_order.npy'].map(
    (f, i) => path.join(out, `${f}.tmp-${dead}-${String(i).padStart(12, 'a')}`),
  );
  for (const f of stale) writeFileSync(f, 'partial');
  const live = path.join(out, `nearest_cent.npy.tmp-${process.pid}-bbbbbbbbbbbb`); // a live writer's: kept
  writeFileSync(live, 'live');
  ok(['run', ...runArgs(d, out)], d.dir, 'rerun');
  for (const f of stale) assert.ok(!existsSync(f), `${f} was left`);
  assert.ok(existsSync(live), 'a live process\'s temp file must stay');
});

// ---------------------------------------------------------------------------------------------
// YAML as PyYAML reads it.

test('the original\'s YAML values resolve as PyYAML resolves them', () => {
  const dir = tmpFolder('rel7');
  const load = (text: string | Buffer) => {
    const f = path.join(dir, 'clustering_configs.yaml');
    writeFileSync(f, text);
    return loadConfigFiles([f], undefined, { cwd: dir });
  };
  for (const v of ['.', 'e0', 'E3', '.e1', '+.', '._1', '1e3']) assert.equal(load(`save_folder: ${v}\n`).outputDir, path.resolve(dir, v), `save_folder: ${v}`);
  assert.equal(load('ncentroids: 010\nsave_folder: o\n').k, 8); // YAML 1.1 octal, as PyYAML
  assert.equal(load('ncentroids: 1:30\nsave_folder: o\n').k, 90); // sexagesimal
  assert.equal(load('ncentroids: 1_000\nsave_folder: o\n').k, 1000);
  assert.throws(() => load(Buffer.concat([Buffer.from('save_folder: out'), Buffer.from([0xff, 0xfe]), Buffer.from('\n')])), /invalid YAML: the file is not valid UTF-8/);
  assert.throws(() => load('save_folder: a\u0007b\n'), /invalid YAML: special characters are not allowed/);
});

test('a corpus of tricky values parses as Debian\'s PyYAML parses it', () => {
  const py = '/usr/bin/python3';
  const probe = spawnSync(py, ['-c', 'import yaml'], { encoding: 'utf8' });
  assert.equal(probe.status, 0, `Debian's python3-yaml is needed (scripts/setup.sh installs it): ${probe.stderr}`);
  const scalars = [
    '.', 'e0', 'E3', '.e1', '+.', '._1', '1e3', '1.0e3', '1.0e+3', '1.5E-2', '010', '09', '00', '0x1f', '0b101', '0o17', '1_000', '1__0', '0_',
    '1:30', '1:30.5', '1:60', '+1:2', '-1:2:3', '0:1', '.inf', '-.Inf', '+.INF', '.NaN', '.nan', '1.', '+.5', '.5', '.5_', '0.1_', '-0', '+1', '-0.0',
    'yes', 'Yes', 'YES', 'no', 'No', 'on', 'Off', 'y', 'n', 'True', 'tRUE', 'false', '~', 'null', 'Null', 'nULL', 'None', 'none',
    '2001-12-14', '2001-12-14t21:59:43.10-05:00', '2001-12-14 21:59:43.10 -5', '12345678901234567890', '-9007199254740993', '0x_1', '0b_',
    'S24', 'cosine', "'010'", '"1e3"', '"a\\tb"', "'it''s'", 'a b c', 'a: b', '"\\u00e9"', '/data/embs.npy', '~/x', './out', '-', '--', '-1', '+', '@x',
    '!!str 010', '!!int "42"', '!!float 1', '!!bool yes', '!!null ""', '[1, .5, yes, "x"]', '{a: 1, b: [2, 3]}', '|\n  010\n  x', '>\n  a\n  b',
  ];
  const docs = scalars.map((s) => `v: ${s}\n`);
  docs.push('a: &x 010\nb: *x\n', 'base: &b {k: 1, m: 2}\nd:\n  <<: *b\n  m: 3\n', '\ufeffv: 1\n', 'v: é\n');
  // PyYAML's view as JSON: numbers as decimal strings (ints) or repr (floats), dates as ms since the epoch (UTC).
  const pyScript = `
import sys, json, yaml, datetime, math, calendar
def enc(v):
    if isinstance(v, bool): return {'bool': v}
    if isinstance(v, int): return {'num': str(v)}
    if isinstance(v, float): return {'num': repr(v)}
    if isinstance(v, datetime.datetime):
        return {'date': v.timestamp() * 1000 if v.tzinfo else calendar.timegm(v.timetuple()) * 1000 + v.microsecond // 1000}
    if isinstance(v, datetime.date): return {'date': calendar.timegm(v.timetuple()) * 1000}
    if v is None: return None
    if isinstance(v, str): return {'str': v}
    if isinstance(v, list): return [enc(x) for x in v]
    if isinstance(v, dict): return {'map': sorted([[k, enc(x)] for k, x in v.items()])}
    return {'other': repr(v)}
out = []
for doc in json.load(sys.stdin):
    try: out.append({'ok': enc(yaml.safe_load(doc.encode('utf-8')))})
    except Exception as e: out.append({'err': type(e).__name__})
print(json.dumps(out))
`;
  const r = spawnSync(py, ['-c', pyScript], { input: JSON.stringify(docs), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const expected = JSON.parse(r.stdout) as { ok?: unknown; err?: string }[];
  const same = (got: unknown, want: unknown): boolean => {
    if (want === null) return got === null;
    if (Array.isArray(want)) return Array.isArray(got) && got.length === want.length && want.every((w, i) => same(got[i], w));
    const w = want as Record<string, unknown>;
    if ('bool' in w) return got === w.bool;
    if ('str' in w) return got === w.str;
    if ('date' in w) return got instanceof Date && Math.abs(got.getTime() - Number(w.date)) < 1;
    if ('num' in w) {
      const t = String(w.num);
      if (typeof got === 'bigint') return got === BigInt(t);
      if (typeof got !== 'number') return false;
      if (t === 'nan') return Number.isNaN(got);
      if (t === 'inf' || t === '-inf') return got === (t === 'inf' ? Infinity : -Infinity);
      return /^-?\d+$/.test(t) ? Number.isSafeInteger(got) && BigInt(got) === BigInt(t) : Object.is(got, Number(t));
    }
    if ('map' in w) {
      if (!got || typeof got !== 'object') return false;
      const g = Object.entries(got as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1));
      const m = w.map as [string, unknown][];
      return g.length === m.length && m.every(([k, x], i) => g[i]![0] === k && same(g[i]![1], x));
    }
    return false;
  };
  docs.forEach((doc, i) => {
    const want = expected[i]!;
    let got: unknown;
    let err: unknown;
    try {
      got = parseYamlLikePyYAML(Buffer.from(doc, 'utf8'));
    } catch (e) {
      err = e;
    }
    if (want.err !== undefined) assert.ok(err !== undefined, `${JSON.stringify(doc)}: PyYAML raises ${want.err}, the engine gave ${String(got)}`);
    else {
      assert.equal(err, undefined, `${JSON.stringify(doc)}: the engine failed (${(err as Error)?.message}) where PyYAML gives ${JSON.stringify(want.ok)}`);
      assert.ok(same(got, want.ok), `${JSON.stringify(doc)}: engine ${String(got)} ${JSON.stringify(got, (_k, v) => (typeof v === 'bigint' ? String(v) : v))} vs PyYAML ${JSON.stringify(want.ok)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Every bad input is refused before any file or folder is created, by a single and a planned run.

test('NaN centroids, k > N, N = 0, wrong-shape centroids, bad eps, cuda without CUDA: refused by a single and a planned run, nothing created', () => {
  const d = makeData('rel10');
  const nanC = path.join(d.dir, 'nan.npy');
  const C = new Float32Array(K * DIM).fill(0.25);
  C[5] = NaN;
  writeNpy(nanC, C, { shape: [K, DIM] });
  const shapeC = path.join(d.dir, 'shape.npy');
  writeNpy(shapeC, new Float32Array((K + 1) * DIM).fill(0.25), { shape: [K + 1, DIM] });
  const empty = path.join(d.dir, 'data', 'empty.f32');
  writeFileSync(empty, Buffer.alloc(0));
  const cudaAvailable = JSON.parse(runCli(['info', '--json'], d.dir).stdout).cuda?.available === true;
  const cases: [string, string[], (string | RegExp)[]][] = [
    ['NaN in the given centroids', ['--centroids', nanC], [nanC, 'NaN', 'centroids must be finite']],
    ['k > N', ['--set', `k=${N + 1}`], [`k = ${N + 1}`, `N = ${N}`]],
    ['N = 0', ['--set', `embeddings=${empty}`], [empty, 'no rows']],
    ['wrong-shape centroids', ['--centroids', shapeC], [shapeC, `(${K + 1}, ${DIM})`, `expected (k=${K}, D=${DIM})`]],
    ['eps outside (0, 1)', ['--eps-list', '0.5,1.5'], ['--eps-list']],
    ['--eps-list \'\'', ['--eps-list', ''], ['--eps-list', 'at least one eps']],
    ...(cudaAvailable ? [] : [['--device cuda without CUDA', ['--device', 'cuda'], ["device 'cuda' was requested"]] as [string, string[], string[]]]),
  ];
  // The same checks at the entry of every executor: one process, and planned (local workers).
  const executors: [string, string[]][] = [['single', []], ['planned', ['--executor', 'local', '--workers', '1']]];
  for (const [how, ex] of executors)
    for (const [what, extra, parts] of cases) {
      // A fresh folder: not created.
      const out = path.join(d.dir, 'fresh-out');
      refused(['run', ...runArgs(d, out), ...extra, ...ex], d.dir, parts, `${what} (${how}, fresh)`);
      assert.ok(!existsSync(out), `${what} (${how}): ${out} was created (${listFiles(out).join(', ')})`);
    }
  // A folder holding a completed run: not a byte changed, the manifest included.
  const done = path.join(d.dir, 'done');
  ok(['run', ...runArgs(d, done)], d.dir, 'complete run');
  const before = Object.fromEntries(listFiles(done).map((f) => [f, readFileSync(path.join(done, f))]));
  for (const [how, ex] of executors)
    for (const [what, extra, parts] of cases) {
      refused(['run', ...runArgs(d, done), ...extra, ...ex], d.dir, parts, `${what} (${how}, existing)`);
      const after = listFiles(done);
      assert.deepEqual(after, Object.keys(before).sort(), `${what} (${how}): files changed`);
      for (const f of after) assert.ok(readFileSync(path.join(done, f)).equals(before[f]!), `${what} (${how}): ${f} changed`);
    }
  // NaN centroids through the API as well.
  const cfg = loadConfigFiles([], { embeddings: d.emb, dim: DIM, output_dir: path.join(d.dir, 'api'), k: K, centroids: nanC });
  assert.throws(() => validateInputs(cfg, 'cluster'), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_NUMERIC' && e.file === nanC);
});

test('--eps-list \'\' is an error, not the default list', () => {
  const d = makeData('rel9');
  const out = path.join(d.dir, 'out');
  ok(['cluster', ...runArgs(d, out)], d.dir, 'cluster');
  ok(['sort', ...runArgs(d, out)], d.dir, 'sort');
  const r = runCli(['dedup', ...runArgs(d, out), '--eps-list', ''], d.dir);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--eps-list: .*at least one eps/);
  assert.ok(!existsSync(path.join(out, 'semdedup', 'M.npy')));
});

// ---------------------------------------------------------------------------------------------
// One run per folder.

test('a second run on a locked folder refuses at once, naming the holder\'s pid', () => {
  const d = makeData('rel11');
  const out = path.join(d.dir, 'out');
  ok(['run', ...runArgs(d, out)], d.dir, 'run');
  const want = digest(out);
  const lock = lockOutputDir(out);
  try {
    for (const cmd of [['run'], ['cluster'], ['sort'], ['dedup'], ['extract', '--eps', '0.01']])
      refused([...cmd, ...runArgs(d, out)], d.dir, [out, 'in use by another semdedup run', `pid ${process.pid}`], `${cmd[0]} while locked`);
  } finally {
    lock.release();
  }
  assert.deepEqual(digest(out), want, 'the refused runs changed nothing');
  ok(['run', ...runArgs(d, out)], d.dir, 'run after release');
});

test('the lock dies with its holder (SIGKILL), and the next run completes', async () => {
  const d = makeData('rel11k');
  const out = path.join(d.dir, 'out');
  const holder = spawn(process.execPath, ['--input-type=module', '-e', `
    import { lockOutputDir } from ${JSON.stringify(path.join(ROOT, 'dist/src/lock.js'))};
    lockOutputDir(${JSON.stringify(out)});
    process.stdout.write('locked\\n');
    setInterval(() => {}, 1000);
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => holder.stdout!.once('data', () => res()));
  refused(['run', ...runArgs(d, out)], d.dir, [`pid ${holder.pid}`], 'while the holder lives');
  const exited = new Promise((res) => holder.once('exit', res));
  holder.kill('SIGKILL');
  await exited;
  ok(['run', ...runArgs(d, out)], d.dir, 'after the holder was killed');
});

test('concurrent runs on one folder: each completes or refuses at once; the result is a clean run\'s', async () => {
  const d = makeData('rel11c');
  const ref = path.join(d.dir, 'ref');
  ok(['run', ...runArgs(d, ref)], d.dir, 'reference');
  const want = digest(ref);
  let completed = 0;
  let refusedRuns = 0;
  const trials = 4;
  for (let t = 0; t < trials; t++) {
    const out = path.join(d.dir, `c${t}`);
    const runs = Array.from({ length: 3 }, () =>
      new Promise<{ code: number | null; stderr: string }>((res) => {
        const p = spawn(process.execPath, [CLI, 'run', ...runArgs(d, out)], { cwd: d.dir, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        p.stderr!.on('data', (b) => (stderr += b));
        p.on('exit', (code) => res({ code, stderr }));
      }),
    );
    const results = await Promise.all(runs);
    for (const r of results) {
      if (r.code === 0) completed++;
      else {
        assert.match(r.stderr, /in use by another semdedup run \(pid \d+\)/, `a run failed otherwise: ${r.stderr}`);
        refusedRuns++;
      }
    }
    assert.ok(results.some((r) => r.code === 0), 'at least one run completes');
    assert.deepEqual(digest(out), want, `trial ${t}: the folder differs from a clean run`);
    assert.deepEqual(tempFiles(out), []);
  }
  assert.equal(completed + refusedRuns, 3 * trials);
  process.stdout.write(`# concurrency: ${trials} trials of 3 runs at once on one folder: ${completed} completed, ${refusedRuns} refused at once naming the holder, 0 failed otherwise; every folder equal to a clean run\n`);
});
