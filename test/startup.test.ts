// Start-up: the heavy optional packages (DuckDB for Parquet, onnxruntime and tokenizers for embed,
// cli-progress for a terminal's bar, yaml for config files) load only in the commands that use
// them. Each command runs in a child process with a preload that, at exit, lists every CommonJS
// module the process loaded (all five packages are CommonJS; an ESM `import` of one goes through
// the same cache, as the control test shows).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { progressDisplay } from '../src/progress.js';
import { CLI, ROOT, tmpFolder } from './helpers.js';

const HEAVY = ['@duckdb/node-api', '@duckdb/node-bindings', 'onnxruntime-node', 'tokenizers', 'cli-progress', 'yaml'];

/** The packages of HEAVY among the modules a child process loaded (node_modules/<pkg>/...). */
function heavyLoaded(files: string[]): string[] {
  return HEAVY.filter((pkg) => files.some((f) => f.includes(`${path.sep}node_modules${path.sep}${pkg.split('/').join(path.sep)}${path.sep}`)));
}

/** Runs `node -r <preload> ARGS` in the repository root; returns the modules it loaded and its result. */
function loadedBy(args: string[]): { files: string[]; code: number | null; stdout: string; stderr: string } {
  const dir = tmpFolder('startup');
  const list = path.join(dir, 'loaded.json');
  const preload = path.join(dir, 'preload.cjs');
  writeFileSync(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require.cache))));\n`);
  const r = spawnSync(process.execPath, ['-r', preload, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  const files = JSON.parse(readFileSync(list, 'utf8')) as string[];
  return { files, code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('the preload sees a package that an ES module imports (control)', () => {
  const r = loadedBy(['--input-type=module', '-e', "await import('cli-progress'); await import('yaml');"]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(heavyLoaded(r.files), ['cli-progress', 'yaml']);
});

test('semdedup --version loads none of the heavy optional packages', () => {
  const r = loadedBy([CLI, '--version']);
  assert.equal(r.code, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(r.stdout.trim(), pkg.version);
  assert.ok(r.files.some((f) => f.includes(`${path.sep}commander${path.sep}`)), 'the CLI ran (commander loaded)');
  assert.deepEqual(heavyLoaded(r.files), []);
});

test('semdedup info loads none of them either', () => {
  const r = loadedBy([CLI, 'info']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /version/);
  assert.deepEqual(heavyLoaded(r.files), []);
});

test('a run on a .f32 file without a config file or terminal loads none of them; with a YAML config, yaml only', () => {
  const dir = tmpFolder('startup-run');
  const n = 300, d = 8;
  const a = new Float32Array(n * d);
  let s = 12345;
  for (let i = 0; i < a.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  for (let r = 0; r < n; r++) {
    const v = a.subarray(r * d, (r + 1) * d);
    const norm = Math.hypot(...v);
    for (let j = 0; j < d; j++) v[j]! /= norm;
  }
  const emb = path.join(dir, 'emb.f32');
  writeFileSync(emb, Buffer.from(a.buffer));
  const r = loadedBy([CLI, 'run', emb, '--dim', String(d), '-k', '3', '-o', path.join(dir, 'out')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /kept/);
  assert.deepEqual(heavyLoaded(r.files), []);

  const cfg = path.join(dir, 'run.yaml');
  writeFileSync(cfg, `embeddings: ${JSON.stringify(emb)}\ndim: ${d}\nk: 3\noutput_dir: ${JSON.stringify(path.join(dir, 'out2'))}\n`);
  const c = loadedBy([CLI, 'run', '-c', cfg]);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(heavyLoaded(c.files), ['yaml']);
});

test('on a terminal the progress bar still draws (cli-progress loaded at the first bar)', () => {
  let out = '';
  const stream = new Writable({ write(c: Buffer, _e, cb) { out += String(c); cb(); } });
  Object.assign(stream, { isTTY: true, columns: 120, cursorTo: (_x: number, _y?: unknown, cb?: () => void) => (cb?.(), true), clearLine: (_d: number, cb?: () => void) => (cb?.(), true), moveCursor: (_x: number, _y: number, cb?: () => void) => (cb?.(), true) });
  const d = progressDisplay({ stream: stream as unknown as NodeJS.WriteStream });
  d.onProgress({ stage: 'assign', done: 5, total: 10 });
  d.onProgress({ stage: 'assign', done: 10, total: 10 });
  d.stop();
  assert.match(out, /assign +█{10}░{10} +50% \| 5\/10 rows/);
  assert.match(out, /assign +█{20} 100% \| 10\/10 rows/);
});

/** Runs `node ARGS` in the repository root with a module hook that lists every ES module the process loaded (file URLs). */
function esmLoadedBy(args: string[]): { urls: string[]; code: number | null; stdout: string; stderr: string } {
  const dir = tmpFolder('startup-esm');
  const list = path.join(dir, 'loaded.txt');
  const hooks = path.join(dir, 'hooks.mjs');
  const register = path.join(dir, 'register.mjs');
  writeFileSync(hooks, `import { appendFileSync } from 'node:fs';\nexport async function load(url, context, next) {\n  const r = await next(url, context);\n  appendFileSync(${JSON.stringify(list)}, url + '\\n');\n  return r;\n}\n`);
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  writeFileSync(list, '');
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { urls: readFileSync(list, 'utf8').split('\n').filter(Boolean), code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The modules of the commands' work (each imported by its command's action only). */
const ACTION_MODULES = ['pipeline.js', 'after/actions.js', 'plan/commands.js', 'embed/run.js', 'info.js'];
const actionModulesIn = (urls: string[]) => ACTION_MODULES.filter((m) => urls.some((u) => u.endsWith(`/dist/src/${m}`)));

test('each command imports the modules of its own work only: --version none, run the pipeline, status the planned runs\' commands', () => {
  const v = esmLoadedBy([CLI, '--version']);
  assert.equal(v.code, 0, v.stderr);
  assert.ok(v.urls.some((u) => u.endsWith('/dist/src/cli.js')), 'the hook saw the CLI load (control)');
  assert.deepEqual(actionModulesIn(v.urls), []);

  const dir = tmpFolder('startup-lazy');
  const a = new Float32Array(100 * 4).fill(0.5);
  writeFileSync(path.join(dir, 'emb.f32'), Buffer.from(a.buffer));
  const r = esmLoadedBy([CLI, 'run', path.join(dir, 'emb.f32'), '--dim', '4', '-k', '2', '-o', path.join(dir, 'out'), '-q']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(actionModulesIn(r.urls), ['pipeline.js']);

  const s = esmLoadedBy([CLI, 'status', path.join(dir, 'nothing-here')]);
  assert.notEqual(s.code, 0);
  assert.match(s.stderr, /no planned run here/);
  assert.deepEqual(actionModulesIn(s.urls), ['plan/commands.js']);
});
