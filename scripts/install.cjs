// npm install hook: use the prebuilt binary for this platform when it loads, otherwise build
// the addon from source with cmake-js (CMakeLists.txt is the one build description).
'use strict';
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { spawnSync } = require('node:child_process');

const root = join(__dirname, '..');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'semdedup.node');

function loads(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)})`], { stdio: 'pipe' });
  return r.status === 0;
}

if (process.env.SEMDEDUP_BUILD_FROM_SOURCE !== '1' && existsSync(prebuilt) && loads(prebuilt)) {
  console.log(`semdedup: using the prebuilt addon ${prebuilt}`);
  process.exit(0);
}

let cmakeJs;
try {
  cmakeJs = require.resolve('cmake-js/bin/cmake-js');
} catch {
  console.error('semdedup: cmake-js is missing; run npm install again');
  process.exit(1);
}
const args = [cmakeJs, 'compile', '--out', 'build', '-p', String(Math.max(1, require('node:os').cpus().length))];
if (process.env.SEMDEDUP_CUDA === '0') args.push('--CDSEMDEDUP_CUDA=OFF');
console.log('semdedup: building the native addon from source (cmake-js)');
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    '\nsemdedup: the native build failed. It needs cmake >= 3.18, a C++17 compiler, FAISS and OpenBLAS:\n' +
      '  Debian/Ubuntu: apt-get install cmake g++ libfaiss-dev libopenblas-dev\n' +
      '  conda: conda install -c pytorch faiss-cpu, then CMAKE_PREFIX_PATH=$CONDA_PREFIX npm rebuild\n' +
      'CUDA is built when nvcc is found; set SEMDEDUP_CUDA=0 to build without it.',
  );
  process.exit(r.status ?? 1);
}
