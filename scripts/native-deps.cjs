// Answers binding.gyp's questions about the native build, from the same places CMakeLists.txt
// reads: native/sources.json (source lists, defines) and package.json (version), and finds
// FAISS and OpenBLAS where CMake would (system directories, CMAKE_PREFIX_PATH, CONDA_PREFIX).
//   node scripts/native-deps.cjs sources core addon   -> native/core/blas.cpp ...
//   node scripts/native-deps.cjs defines blas openblas
//   node scripts/native-deps.cjs version | have faiss | have openblas | include faiss | lib faiss
//   node scripts/native-deps.cjs addon-api           -> the node-addon-api include directory
'use strict';
const { existsSync, readFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const root = join(__dirname, '..');
const spec = JSON.parse(readFileSync(join(root, 'native', 'sources.json'), 'utf8'));

const multiarch = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' }[process.arch] ?? '';
const prefixes = [
  ...(process.env.CMAKE_PREFIX_PATH ?? '').split(':').filter(Boolean),
  ...(process.env.CONDA_PREFIX ? [process.env.CONDA_PREFIX] : []),
  '/usr/local',
  '/usr',
];
const libDirs = (p) => [join(p, 'lib', multiarch), join(p, 'lib'), join(p, 'lib64')];

function findFile(dirs, names) {
  for (const d of dirs) for (const n of names) if (existsSync(join(d, n))) return join(d, n);
  return undefined;
}

function openblas() {
  for (const p of prefixes) {
    const incDirs = [join(p, 'include', multiarch, 'openblas-pthread'), join(p, 'include', 'openblas'), join(p, 'include')];
    const inc = incDirs.find((d) => existsSync(join(d, 'cblas.h')));
    const lib = findFile(libDirs(p), ['libopenblas.so', 'libopenblas.a']);
    if (inc && lib) return { include: inc, lib };
  }
  return undefined;
}

function faiss() {
  if (!openblas()) return undefined; // FAISS needs a BLAS with LAPACK; OpenBLAS is the one we link
  for (const p of prefixes) {
    const inc = join(p, 'include');
    const lib = findFile(libDirs(p), ['libfaiss.so', 'libfaiss.a']);
    if (existsSync(join(inc, 'faiss', 'Clustering.h')) && lib) return { include: inc, lib };
  }
  return undefined;
}

// node-addon-api is a header-only package: napi.h sits at its root.
function addonApi() {
  const paths = [root, ...(process.env.NODE_PATH ?? '').split(':').filter(Boolean)];
  return dirname(require.resolve('node-addon-api/package.json', { paths }));
}

const found = { faiss, openblas };
const [cmd, ...args] = process.argv.slice(2);
let out;
switch (cmd) {
  case 'sources':
    out = args.flatMap((k) => spec.sources[k] ?? []);
    break;
  case 'defines':
    out = args.flatMap((k) => spec.defines[k] ?? []);
    break;
  case 'include_dirs':
    out = args.flatMap((k) => spec.include_dirs[k] ?? []);
    break;
  case 'version':
    out = [JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version];
    break;
  case 'have':
    out = [found[args[0]]() ? '1' : '0'];
    break;
  case 'include':
  case 'lib': {
    const f = found[args[0]]();
    out = f && !(cmd === 'include' && f.include === '/usr/include') ? [f[cmd]] : [];
    break;
  }
  case 'addon-api':
    out = [addonApi()];
    break;
  default:
    console.error(`native-deps: unknown command ${cmd}`);
    process.exit(2);
}
process.stdout.write(out.length ? out.join('\n') + '\n' : '');
