// npm install hook. The prebuilt addon comes in the platform package (an optional dependency,
// e.g. semdedup-linux-x64-gnu); when it is there and loads, nothing is built. Otherwise the
// addon is built from source into build/Release/semdedup.node:
//   - with cmake-js and CMakeLists.txt when cmake >= 3.19 is on the PATH (CPU engine, FAISS,
//     OpenBLAS, and the CUDA backend when nvcc is found; SEMDEDUP_CUDA=0 leaves it out);
//   - with node-gyp (shipped with npm) and binding.gyp otherwise: the CPU engine only.
// cmake-js and node-addon-api are needed only here: when the project does not have them they
// are installed for the build into a temporary folder, then removed with the build's
// intermediates, so that an installed package keeps only the addon.
//   SEMDEDUP_BUILD_FROM_SOURCE=1   build even when the prebuilt loads
//   SEMDEDUP_BUILD_WITH=gyp|cmake  choose the build tool
'use strict';
const { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } = require('node:fs');
const { dirname, join, sep } = require('node:path');
const { spawnSync } = require('node:child_process');
const os = require('node:os');

const root = join(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const installed = root.split(sep).includes('node_modules');

function log(msg) {
  console.log(`semdedup: ${msg}`);
}

function libc() {
  if (process.platform !== 'linux') return '';
  const report = process.report?.getReport?.();
  return report?.header?.glibcVersionRuntime ? '-gnu' : '-musl';
}

/** The platform package's addon, when installed (same rule as src/native/platform.ts). */
function platformAddon() {
  const name = `semdedup-${process.platform}-${process.arch}${libc()}`;
  try {
    return require.resolve(`${name}/semdedup.node`, { paths: [root] });
  } catch {
    return undefined;
  }
}

function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'pipe' });
  return { ok: r.status === 0, why: String(r.stderr).split('\n').find((l) => /Error/.test(l)) ?? '' };
}

function has(cmd, args = ['--version']) {
  const r = spawnSync(cmd, args, { stdio: 'pipe' });
  return r.status === 0 ? String(r.stdout) : undefined;
}

function cmakeUsable() {
  const v = has('cmake');
  const m = v && /version (\d+)\.(\d+)/.exec(v);
  return !!m && (Number(m[1]) > 3 || (Number(m[1]) === 3 && Number(m[2]) >= 19));
}

function resolveFrom(name, paths) {
  try {
    return require.resolve(`${name}/package.json`, { paths });
  } catch {
    return undefined;
  }
}

/** node-gyp: npm's own copy (npm sets npm_config_node_gyp for scripts), else one on the PATH. */
function nodeGyp() {
  const candidates = [process.env.npm_config_node_gyp];
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const js = candidates.find((c) => c && existsSync(c));
  if (js) return [process.execPath, js];
  return has('node-gyp') ? ['node-gyp'] : undefined;
}

/** The tools a build needs, from the project or installed on demand into a temporary folder. */
function buildTools(names) {
  const paths = [root];
  const missing = names.filter((n) => !resolveFrom(n, paths));
  if (missing.length === 0) return { paths, env: {}, cleanup: () => {} };
  const dir = mkdtempSync(join(os.tmpdir(), 'semdedup-build-'));
  const specs = missing.map((n) => `${n}@${pkg.peerDependencies[n]}`);
  log(`installing the build tools ${specs.join(' ')}`);
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
  const r = spawnSync(npm[0], [...npm.slice(1), 'install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--ignore-scripts', '--prefix', dir, ...specs], {
    stdio: 'inherit',
  });
  if (r.status !== 0) fail(`could not install ${specs.join(' ')}`);
  const nm = join(dir, 'node_modules');
  const nodePath = [nm, process.env.NODE_PATH].filter(Boolean).join(':');
  return { paths: [root, nm], env: { NODE_PATH: nodePath }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function fail(msg) {
  console.error(
    `\nsemdedup: ${msg}\n` +
      'No prebuilt addon loaded for this platform, so it is built from source. That needs a C++17\n' +
      'compiler (and make), with cmake >= 3.19 for the full build, FAISS and OpenBLAS for the fast\n' +
      'CPU kernels, nvcc for the CUDA backend:\n' +
      '  Debian/Ubuntu: apt-get install g++ make cmake libfaiss-dev libopenblas-dev\n' +
      '  conda: conda install -c pytorch faiss-cpu, then CMAKE_PREFIX_PATH=$CONDA_PREFIX npm rebuild semdedup\n' +
      'Without cmake the CPU engine is built with node-gyp (FAISS and OpenBLAS when found).',
  );
  process.exit(1);
}

/** Keeps build/Release/semdedup.node, drops the intermediates (in an installed package only). */
function tidy() {
  if (!installed) return;
  const build = join(root, 'build');
  for (const e of readdirSync(build)) if (e !== 'Release') rmSync(join(build, e), { recursive: true, force: true });
  const rel = join(build, 'Release');
  for (const e of readdirSync(rel)) if (e !== 'semdedup.node') rmSync(join(rel, e), { recursive: true, force: true });
}

function buildWithCmake() {
  const tools = buildTools(['cmake-js', 'node-addon-api']);
  const cmakeJs = join(dirname(resolveFrom('cmake-js', tools.paths)), 'bin', 'cmake-js');
  const args = [cmakeJs, 'compile', '--out', 'build', '-p', String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length))];
  if (process.env.SEMDEDUP_CUDA === '0') args.push('--CDSEMDEDUP_CUDA=OFF');
  if (installed) args.push('--CDSEMDEDUP_TESTS=OFF');
  log('building the native addon from source (cmake-js, CMakeLists.txt)');
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...tools.env } });
  tools.cleanup();
  return r.status === 0;
}

function buildWithGyp() {
  const gyp = nodeGyp();
  if (!gyp) fail('neither cmake >= 3.19 nor node-gyp was found');
  const tools = buildTools(['node-addon-api']);
  const args = [...gyp.slice(1), 'rebuild', '--release', `--jobs=${Math.max(1, os.cpus().length)}`];
  // Node's own headers when it has them (no download): <prefix>/include/node.
  const prefix = join(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  log('building the CPU engine from source (node-gyp, binding.gyp; no cmake found)');
  const r = spawnSync(gyp[0], args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...tools.env } });
  tools.cleanup();
  return r.status === 0;
}

const forced = process.env.SEMDEDUP_BUILD_FROM_SOURCE === '1';
const prebuilt = platformAddon();
if (!forced && prebuilt) {
  const r = loads(prebuilt);
  if (r.ok) {
    log(`using the prebuilt addon ${prebuilt}`);
    process.exit(0);
  }
  log(`the prebuilt addon ${prebuilt} does not load here (${r.why}); building from source`);
}

const via = process.env.SEMDEDUP_BUILD_WITH ?? (cmakeUsable() ? 'cmake' : 'gyp');
if (!has('c++') && !has('g++') && !has('clang++')) fail('no C++ compiler (c++, g++ or clang++) on the PATH');
const ok = via === 'cmake' ? buildWithCmake() : buildWithGyp();
if (!ok) fail(`the ${via === 'cmake' ? 'cmake-js' : 'node-gyp'} build failed (its output is above)`);
tidy();
const built = join(root, 'build', 'Release', 'semdedup.node');
const r = loads(built);
if (!r.ok) fail(`the addon was built but does not load: ${r.why}`);
log(`built ${built}`);
if (forced && prebuilt) log('the platform package is also installed and is loaded first; set SEMDEDUP_NATIVE_PATH to this file, or install with --omit=optional');
