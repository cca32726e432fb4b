// The package as a user gets it: the main package and the platform package packed, installed
// offline into a new project (from the npm cache that the project's own install filled) with no
// compiler, cmake or nvcc on the PATH, then used through its CLI, the built-in example, an ESM
// and a CommonJS program and a TypeScript check of its types. Also: the build descriptions'
// shared source list, the package manifests, and the loader's order of candidates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { candidatePaths, platformPackage } from '../src/native/index.js';
import { ROOT, tmpFolder } from './helpers.js';

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const sources = JSON.parse(readFileSync(path.join(ROOT, 'native', 'sources.json'), 'utf8'));
/** What a self-contained addon may still need from a Linux system. */
const ALLOWED_LIBS = /^(linux-vdso|ld-linux[^ ]*|libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libgomp)\.so/;

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeout?: number }): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', timeout: opts.timeout ?? 300_000 });
  if (r.status !== 0) assert.fail(`${cmd} ${args.join(' ')} (in ${opts.cwd}) failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

function listFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...listFiles(p, base));
    else out.push(path.relative(base, p));
  }
  return out.sort();
}

function tarList(tgz: string): string[] {
  return run('tar', ['-tzf', tgz], { cwd: path.dirname(tgz) }).stdout.split('\n').filter(Boolean).map((l) => l.replace(/^package\//, '')).sort();
}

function lddLibs(file: string): string[] {
  return run('ldd', [file], { cwd: ROOT })
    .stdout.split('\n')
    .map((l) => l.trim().split(/\s+/)[0]!)
    .filter(Boolean)
    .map((l) => l.replace(/^.*\//, ''));
}

function glob(dir: string, ext: string): string[] {
  return readdirSync(path.join(ROOT, dir)).filter((f) => f.endsWith(ext)).map((f) => `${dir}/${f}`);
}

test('install: native/sources.json lists every native/core and native/addon .cpp, and only those', () => {
  const listed = [...sources.sources.core, ...sources.sources.faiss, ...sources.sources.addon].sort();
  const found = [...glob('native/core', '.cpp'), ...glob('native/addon', '.cpp')].sort();
  assert.deepEqual(listed, found, 'native/sources.json and the .cpp files on disk differ');
  for (const f of sources.sources.static) assert.ok(existsSync(path.join(ROOT, f)), `${f} exists`);
  assert.deepEqual(sources.sources.faiss, ['native/core/kmeans_faiss.cpp'], 'the FAISS adapter is the one FAISS-only source');
});

test('install: binding.gyp reads its sources and defines from native/sources.json', () => {
  const ask = (...args: string[]) => run(process.execPath, [path.join(ROOT, 'scripts', 'native-deps.cjs'), ...args], { cwd: ROOT }).stdout.split('\n').filter(Boolean);
  assert.deepEqual(ask('sources', 'core', 'engine', 'addon'), [...sources.sources.core, ...sources.sources.engine, ...sources.sources.addon]);
  assert.deepEqual(ask('defines', 'addon'), sources.defines.addon);
  assert.deepEqual(ask('version'), [pkg.version]);
  const gyp = readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8');
  assert.match(gyp, /native-deps\.cjs sources core engine addon/);
  assert.doesNotMatch(gyp, /native\/(core|engine|addon)\/\w+\.cpp/, 'binding.gyp names no source file itself');
  assert.doesNotMatch(gyp, /\.cu['"]|native\/cuda/, 'no CUDA in binding.gyp');
});

test('install: the package manifests (exports, engines, platform packages, build tools)', () => {
  assert.equal(pkg.exports['.'].types, './dist/src/index.d.ts');
  assert.equal(pkg.exports['.'].default, './dist/src/index.js');
  assert.equal(pkg.engines.node, '^20.19.0 || >=22.12.0', 'require(esm) exists from 20.19 and 22.12');
  assert.ok(pkg.repository?.url, 'repository');
  assert.equal(pkg.scripts.prepack, 'node scripts/prepack.mjs');
  for (const dep of ['node-gyp-build', 'cmake-js', 'node-addon-api']) assert.equal(pkg.dependencies[dep], undefined, `${dep} is not a runtime dependency`);
  for (const dep of ['cmake-js', 'node-addon-api']) assert.equal(pkg.peerDependenciesMeta[dep]?.optional, true, `${dep} is an optional peer (source builds only)`);
  const platforms = readdirSync(path.join(ROOT, 'npm'));
  assert.ok(platforms.includes('linux-x64-gnu'));
  for (const dir of platforms) {
    const p = JSON.parse(readFileSync(path.join(ROOT, 'npm', dir, 'package.json'), 'utf8'));
    const [os, cpu, libc] = dir.split('-');
    assert.equal(p.name, `semdedup-${dir}`);
    assert.equal(p.version, pkg.version, `${p.name} has the main package's version`);
    assert.equal(pkg.optionalDependencies[p.name], pkg.version, `${p.name} is an optional dependency at ${pkg.version}`);
    assert.deepEqual([p.os, p.cpu, p.libc], [[os], [cpu], [libc === 'gnu' ? 'glibc' : 'musl']]);
    assert.deepEqual(p.files, ['semdedup.node']);
  }
});

test('install: the loader tries the platform package, then the local build; SEMDEDUP_NATIVE_PATH alone when set', () => {
  const saved = process.env.SEMDEDUP_NATIVE_PATH;
  try {
    delete process.env.SEMDEDUP_NATIVE_PATH;
    const list = candidatePaths();
    assert.equal(list.length, 2);
    assert.ok(list[0]!.endsWith(path.join(platformPackage(), 'semdedup.node')), `platform package first: ${list[0]}`);
    assert.equal(list[1], path.join(ROOT, 'build', 'Release', 'semdedup.node'));
    for (const p of list) assert.ok(path.isAbsolute(p), `${p} is absolute`);
    process.env.SEMDEDUP_NATIVE_PATH = 'some/addon.node';
    assert.deepEqual(candidatePaths(), [path.resolve('some/addon.node')]);
  } finally {
    if (saved === undefined) delete process.env.SEMDEDUP_NATIVE_PATH;
    else process.env.SEMDEDUP_NATIVE_PATH = saved;
  }
  if (process.platform === 'linux' && process.arch === 'x64') assert.match(platformPackage(), /^semdedup-linux-x64-(gnu|musl)$/);
});

test('install: packed, installed offline with no compiler on the PATH, and used', { timeout: 600_000 }, () => {
  const built = path.join(ROOT, 'build', 'Release', 'semdedup.node');
  assert.ok(existsSync(built), `${built} exists (the project's install builds it)`);
  const tmp = tmpFolder('install');
  try {
    // 1. The main package, packed from a copy of the sources as a fresh clone has them (no dist/).
    const src = path.join(tmp, 'src');
    const files = run('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT }).stdout.split('\n').filter((f) => f && existsSync(path.join(ROOT, f)));
    for (const f of files) {
      mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      copyFileSync(path.join(ROOT, f), path.join(src, f));
    }
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(src, 'node_modules'));
    const packs = path.join(tmp, 'packs');
    mkdirSync(packs);
    const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
    const npm = existsSync(npmCli) ? npmCli : process.env.npm_execpath!;
    run(process.execPath, [npm, 'pack', '--pack-destination', packs], { cwd: src });
    const mainTgz = path.join(packs, `semdedup-${pkg.version}.tgz`);
    const mainFiles = tarList(mainTgz);
    for (const f of ['package.json', 'README.md', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli.js', 'dist/tools/cli.js', 'scripts/install.cjs', 'scripts/native-deps.cjs', 'binding.gyp', 'CMakeLists.txt', 'native/sources.json', 'native/core/blas.cpp', 'native/core/semdedup/errors.def', 'native/engine/engine.cpp', 'native/engine/semdedup/engine.hpp', 'native/addon/addon.cpp', 'native/cuda/CMakeLists.txt'])
      assert.ok(mainFiles.includes(f), `the main package ships ${f}`);
    for (const f of mainFiles) {
      assert.doesNotMatch(f, /\.map$|^dist\/test\/|^native\/tests\/|^test\/|^bench\/|^scripts\/(setup\.sh|test\.mjs|prebuild\.mjs|prepack\.mjs|gpu-check\.sh)$|\.node$|^\.ci\//, `the main package does not ship ${f}`);
    }

    // 2. The platform package with this machine's addon (its libraries checked by prebuild.mjs too).
    run(process.execPath, [path.join(ROOT, 'scripts', 'prebuild.mjs'), '--out', path.join(tmp, 'stage'), '--pack-destination', packs], { cwd: ROOT });
    const platTgz = path.join(packs, `${platformPackage()}-${pkg.version}.tgz`);
    assert.deepEqual(tarList(platTgz), ['README.md', 'package.json', 'semdedup.node']);
    const sizes = { [path.basename(mainTgz)]: statSync(mainTgz).size, [path.basename(platTgz)]: statSync(platTgz).size };
    console.log(`install: tarballs ${JSON.stringify(sizes)}; main package files: ${mainFiles.length}`);

    // 3. A new project, installed offline. The lockfile pins the registry dependencies as the
    //    project's own lockfile does, so that only tarballs already in the npm cache are needed.
    const app = path.join(tmp, 'app');
    mkdirSync(app);
    const appDeps = { semdedup: `file:../packs/${path.basename(mainTgz)}`, [platformPackage()]: `file:../packs/${path.basename(platTgz)}` };
    writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, dependencies: appDeps }, null, 2));
    const ownLock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
    const lockPackages: Record<string, unknown> = { '': { name: 'app', version: '1.0.0', dependencies: appDeps } };
    // The runtime dependencies and theirs (a dependency's own platform packages are optional:
    // those of other platforms are pinned, and npm skips them as the project's install did).
    const todo = Object.keys(pkg.dependencies).map((dep) => ({ dep, optional: false }));
    while (todo.length) {
      const { dep, optional } = todo.shift()!;
      if (lockPackages[`node_modules/${dep}`]) continue;
      const e = ownLock.packages[`node_modules/${dep}`];
      if (!e && optional) continue;
      assert.ok(e?.integrity, `package-lock.json pins ${dep}`);
      lockPackages[`node_modules/${dep}`] = {
        version: e.version,
        resolved: e.resolved ?? `https://registry.npmjs.org/${dep}/-/${dep.replace(/^@[^/]+\//, '')}-${e.version}.tgz`,
        integrity: e.integrity,
        license: e.license,
        engines: e.engines,
        ...(e.os ? { os: e.os } : {}),
        ...(e.cpu ? { cpu: e.cpu } : {}),
        ...(e.libc ? { libc: e.libc } : {}),
        ...(e.optional || optional ? { optional: true } : {}),
        ...(e.dependencies ? { dependencies: e.dependencies } : {}),
        ...(e.optionalDependencies ? { optionalDependencies: e.optionalDependencies } : {}),
      };
      for (const d of Object.keys(e.dependencies ?? {})) todo.push({ dep: d, optional });
      for (const d of Object.keys(e.optionalDependencies ?? {})) todo.push({ dep: d, optional: true });
    }
    writeFileSync(path.join(app, 'package-lock.json'), JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: lockPackages }, null, 2));

    // PATH: node, npm, sh and nothing else (no c++, g++, cc, make, cmake, nvcc, python).
    const bin = path.join(tmp, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
    symlinkSync(npm, path.join(bin, 'npm'));
    symlinkSync('/bin/sh', path.join(bin, 'sh'));
    const env: NodeJS.ProcessEnv = { PATH: bin, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR ?? '/tmp', LANG: 'C.UTF-8' };
    for (const k of Object.keys(process.env)) if (k.startsWith('OPENBLAS_')) env[k] = process.env[k];
    if (process.env.npm_config_cache) env.npm_config_cache = process.env.npm_config_cache;
    for (const tool of ['c++', 'g++', 'gcc', 'cc', 'make', 'cmake', 'nvcc'])
      assert.notEqual(spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status, 0, `${tool} is not on the PATH`);

    const t0 = process.hrtime.bigint();
    const inst = run('npm', ['install', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    assert.match(inst.stdout + inst.stderr, /semdedup: using the prebuilt addon .*semdedup\.node/);
    const installed = path.join(app, 'node_modules', 'semdedup');
    assert.ok(!existsSync(path.join(installed, 'build')), 'nothing was built');
    assert.ok(!existsSync(path.join(app, 'node_modules', 'cmake-js')), 'cmake-js is not installed');
    assert.ok(!existsSync(path.join(app, 'node_modules', 'node-addon-api')), 'node-addon-api is not installed');
    const before = listFiles(installed);
    const mb = (dir: string) => listFiles(dir).reduce((s, f) => s + statSync(path.join(dir, f)).size, 0) / 1e6;
    console.log(`install: npm install --offline took ${seconds.toFixed(1)} s; node_modules/semdedup ${mb(installed).toFixed(1)} MB, ${platformPackage()} ${mb(path.join(app, 'node_modules', platformPackage())).toFixed(1)} MB`);

    // 4. The CLI: which addon it loaded.
    const addon = path.join(app, 'node_modules', platformPackage(), 'semdedup.node');
    const info = JSON.parse(run(path.join(app, 'node_modules', '.bin', 'semdedup'), ['info', '--json'], { cwd: app, env }).stdout);
    assert.equal(info.addon, addon);
    assert.equal(info.version, pkg.version);
    assert.notEqual(info.faiss, 'none', 'FAISS is linked in');
    assert.equal(typeof info.cuda.compiled, 'boolean');

    // 5. The built-in example, writing under the current directory.
    const ex = JSON.parse(run(path.join(app, 'node_modules', '.bin', 'semdedup-tools'), ['example', '--quiet', '--json'], { cwd: app, env }).stdout);
    assert.ok(existsSync(path.join(app, 'examples-out')), 'the example writes under the current directory');
    for (const e of ex.perEps) {
      assert.ok(e.recall >= 0.99, `eps ${e.eps}: recall ${e.recall}`);
      assert.equal(e.precision, 1, `eps ${e.eps}: precision`);
    }

    // 6. ESM, CommonJS and TypeScript programs against the installed copy.
    const npyCheck = `
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'semdedup-app-'));
      const file = path.join(dir, 'a.npy');
      const data = new Float32Array([1, 2, 3, 4, 5, 6]);
      s.writeNpy(file, data, { shape: [2, 3] });
      const back = s.readNpy(file);
      const info = await s.engineInfo();
      console.log(JSON.stringify({ shape: back.header.shape, data: Array.from(back.data), addon: info.addon, error: new s.SemDedupError('ERR_INPUT', 'x') instanceof Error }));`;
    writeFileSync(path.join(app, 'esm.mjs'), `import * as s from 'semdedup';\nimport fs from 'node:fs'; import os from 'node:os'; import path from 'node:path';\n${npyCheck}\n`);
    writeFileSync(path.join(app, 'cjs.cjs'), `const s = require('semdedup');\nconst fs = require('node:fs'), os = require('node:os'), path = require('node:path');\n(async () => {${npyCheck}\n})().catch((e) => { console.error(e); process.exit(1); });\n`);
    for (const prog of ['esm.mjs', 'cjs.cjs']) {
      const out = JSON.parse(run(process.execPath, [prog], { cwd: app, env }).stdout);
      assert.deepEqual(out, { shape: [2, 3], data: [1, 2, 3, 4, 5, 6], addon, error: true }, prog);
    }
    // The in-memory call, as a service makes it: rows and ids in, kept ids and duplicates out.
    writeFileSync(
      path.join(app, 'mem.mjs'),
      `import { dedup } from 'semdedup';
      const n = 200, d = 8, X = new Float32Array((n + 1) * d);
      let seed = 1;
      const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < d; j++) { X[i * d + j] = r(); s += X[i * d + j] ** 2; }
        for (let j = 0; j < d; j++) X[i * d + j] /= Math.sqrt(s);
      }
      X.copyWithin(n * d, 0, d);
      const ids = Array.from({ length: n + 1 }, (_, i) => 'id' + i);
      const res = await dedup({ embeddings: X, ids, threshold: 0.999, signal: AbortSignal.timeout(120000) });
      console.log(JSON.stringify({ kept: res.kept.length, k: res.k, removed: res.removed.map((x) => [x.id, x.duplicateOf].sort()), similarity: res.removed[0]?.similarity }));`,
    );
    const mem = JSON.parse(run(process.execPath, ['mem.mjs'], { cwd: app, env }).stdout);
    assert.deepEqual(mem.removed, [['id0', 'id200']], 'the planted copy is the one duplicate');
    assert.equal(mem.kept, 200);
    assert.equal(mem.k, 5, 'k from N = 201: round(√201) = 14, at most 201 / 39 = 5');
    assert.ok(Math.abs(mem.similarity - 1) < 1e-6);

    // A TypeScript service under --strict against the packed declarations, with `types: []` (the
    // default from TypeScript 6: the declarations load Node's types themselves) and the library
    // checked (no skipLibCheck): the in-memory call, the model handle, an AbortSignal, typed run options.
    writeFileSync(
      path.join(app, 'check.mts'),
      `import { dedup, loadModel, runAll, engineInfo, SemDedupError, type DedupOptions, type EmbeddingModel, type InMemoryDedupResult, type RemovedItem, type RunAllOptions } from 'semdedup';
export async function service(texts: string[], ids: string[], modelDir: string, signal: AbortSignal): Promise<string[]> {
  const model: EmbeddingModel = await loadModel(modelDir, { device: 'cpu' });
  try {
    const embeddings: Float32Array = await model.embed(texts, { signal });
    const r: InMemoryDedupResult = await dedup({ embeddings, ids, threshold: 0.9, signal, onProgress: (p) => console.log(p.stage, p.done / p.total) });
    const dups: RemovedItem[] = r.removed;
    for (const x of dups) console.log(\`\${x.id} duplicates \${x.duplicateOf} (similarity \${x.similarity.toFixed(3)})\`);
    return r.kept;
  } catch (e) {
    if (e instanceof SemDedupError && e.code === 'ERR_CANCELLED') return [];
    throw e;
  } finally {
    await model.close();
  }
}
const ac = new AbortController();
const half: InMemoryDedupResult = await dedup({ embeddings: new Uint16Array(16), dim: 8, eps: 0.05, k: 1, signal: ac.signal });
const fromTexts = await dedup({ texts: ['a', 'b'], model: await loadModel('m'), ids: ['x', 'y'] });
const run: RunAllOptions = { embeddings: 'emb.npy', outputDir: 'out', k: 400, epsList: [0.05] };
const done = await runAll(run, { signal: ac.signal, log: (l: string) => console.error(l) });
// @ts-expect-error a misspelt option does not compile
const typo: RunAllOptions = { embeddings: 'emb.npy', outputDir: 'out', ncentroid: 400 };
// @ts-expect-error an option of the wrong type does not compile
const wrong: RunAllOptions = { embeddings: 'emb.npy', outputDir: 'out', k: '400' };
const o: DedupOptions | undefined = undefined;
void engineInfo; void o; void half; void fromTexts; void done.seconds.total; void typo; void wrong;
`,
    );
    writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, typeRoots: [path.join(ROOT, 'node_modules', '@types')], types: [] }, files: ['check.mts'] }),
    );
    run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: app, env });

    // 7. The installed addon's libraries, and an installed package left as it was.
    if (process.platform === 'linux') {
      const libs = lddLibs(addon);
      const extra = libs.filter((l) => !ALLOWED_LIBS.test(l));
      assert.deepEqual(extra, [], `the addon needs only glibc, libgcc_s, libstdc++ and libgomp (ldd: ${libs.join(' ')})`);
      // The newest glibc symbol version it uses is no newer than the README's minimum.
      const versions = [...run('objdump', ['-T', addon], { cwd: ROOT }).stdout.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => Number(m[1]) * 1000 + Number(m[2]));
      const readme = /Linux x64 with glibc (\d+)\.(\d+) or later/.exec(readFileSync(path.join(installed, 'README.md'), 'utf8'));
      assert.ok(readme, 'the README states the glibc minimum');
      const newest = Math.max(...versions);
      assert.ok(newest <= Number(readme[1]) * 1000 + Number(readme[2]), `the addon needs glibc ${Math.floor(newest / 1000)}.${newest % 1000}, the README says ${readme[1]}.${readme[2]}`);
    }
    assert.deepEqual(listFiles(installed), before, 'running the package wrote nothing into node_modules/semdedup');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
