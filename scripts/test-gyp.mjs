// CI: the node-gyp build (binding.gyp, the install's fallback when cmake is missing), built in a
// temporary folder from the files the package ships, then the TypeScript tests of the engine run
// against it (SEMDEDUP_NATIVE_PATH). Two variants:
//   system    FAISS and OpenBLAS as found (the same ones CMake uses): async, synth and pipeline tests
//   portable  neither: the engine's own k-means and portable kernels: synth tests
//   node scripts/test-gyp.mjs [system|portable ...]   (default: both)
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const variants = {
  system: { gypArgs: [], tests: ['async', 'synth', 'pipeline'] },
  portable: { gypArgs: ['-Dsemdedup_faiss=0', '-Dsemdedup_openblas=0'], tests: ['synth'] },
};
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(variants);

function run(cmd, args, opts = {}) {
  console.log(`test-gyp: ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.status !== 0) {
    console.error(`test-gyp: failed (${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  const js = candidates.find((c) => c && existsSync(c));
  if (!js) throw new Error('node-gyp (shipped with npm) not found');
  return js;
}

const gyp = nodeGyp();
const prefix = join(dirname(process.execPath), '..');
const nodedir = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
const jobs = '--jobs=2';
const tmp = mkdtempSync(join(tmpdir(), 'semdedup-gyp-'));
try {
  for (const name of chosen) {
    const v = variants[name];
    if (!v) throw new Error(`unknown variant ${name}`);
    const dir = join(tmp, name);
    mkdirSync(join(dir, 'scripts'), { recursive: true });
    for (const f of ['binding.gyp', 'package.json', 'native']) cpSync(join(root, f), join(dir, f), { recursive: true });
    cpSync(join(root, 'scripts', 'native-deps.cjs'), join(dir, 'scripts', 'native-deps.cjs'));
    rmSync(join(dir, 'native', 'tests'), { recursive: true, force: true });
    const env = { ...process.env, NODE_PATH: join(root, 'node_modules') };
    run(process.execPath, [gyp, 'rebuild', '--release', jobs, ...nodedir, '--', ...v.gypArgs], { cwd: dir, env });
    const addon = join(dir, 'build', 'Release', 'semdedup.node');
    run(process.execPath, [join(root, 'dist', 'src', 'cli.js'), 'info'], { cwd: root, env: { ...process.env, SEMDEDUP_NATIVE_PATH: addon } });
    const tests = v.tests.map((t) => join(root, 'dist', 'test', `${t}.test.js`));
    run(process.execPath, ['--test', '--test-concurrency=1', ...tests], { cwd: root, env: { ...process.env, SEMDEDUP_NATIVE_PATH: addon } });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`test-gyp: ${chosen.join(', ')} passed`);
