// Stages the platform package of this machine (npm/<platform>/, e.g. semdedup-linux-x64-gnu) with
// the locally built addon (build/Release/semdedup.node, from `npm run build:native`, which links
// FAISS, OpenBLAS, the C++ runtime and the CUDA runtime statically), and packs it:
//   node scripts/prebuild.mjs [--out DIR] [--pack-destination DIR]
// The staged folder is DIR (default build/npm/<package>); the tarball goes to the pack
// destination (default build/). On Linux the addon's shared libraries are checked
// first: only glibc, libgcc_s and libgomp may remain.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { out: { type: 'string' }, 'pack-destination': { type: 'string' } } });

function libc() {
  if (process.platform !== 'linux') return '';
  return process.report.getReport().header.glibcVersionRuntime ? '-gnu' : '-musl';
}
const target = `${process.platform}-${process.arch}${libc()}`;
const name = `semdedup-${target}`;
const src = join('build', 'Release', 'semdedup.node');
const template = join('npm', target);
if (!existsSync(template)) {
  console.error(`prebuild: no platform package for ${target} (npm/${target}); this platform builds from source`);
  process.exit(1);
}
if (!existsSync(src)) {
  console.error(`prebuild: ${src} not found: run npm run build:native first`);
  process.exit(1);
}

/** The libraries a self-contained addon may still need from the system (Linux). */
export const ALLOWED_LIBS = /^(linux-vdso|ld-linux[^ ]*|libc|libm|libdl|librt|libpthread|libgcc_s|libstdc\+\+|libgomp)\.so/;

if (process.platform === 'linux') {
  const ldd = spawnSync('ldd', [src], { encoding: 'utf8' });
  const libs = ldd.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
  const extra = libs.filter((l) => !ALLOWED_LIBS.test(l.replace(/^.*\//, '')));
  if (ldd.status !== 0 || extra.length > 0) {
    console.error(`prebuild: ${src} needs ${extra.join(', ') || 'unknown libraries'} from the system; build it with SEMDEDUP_STATIC_DEPS=ON and the static libraries (libopenblas-dev, libfaiss-dev)`);
    process.exit(1);
  }
}

const root = JSON.parse(readFileSync('package.json', 'utf8'));
const manifest = JSON.parse(readFileSync(join(template, 'package.json'), 'utf8'));
if (manifest.name !== name) throw new Error(`${template}/package.json is named ${manifest.name}, expected ${name}`);
if (root.optionalDependencies?.[name] !== root.version) throw new Error(`package.json: optionalDependencies.${name} must be ${root.version}`);
manifest.version = root.version;

const out = resolve(values.out ?? join('build', 'npm', name));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
writeFileSync(join(out, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
copyFileSync(join(template, 'README.md'), join(out, 'README.md'));
copyFileSync(src, join(out, 'semdedup.node'));
console.log(`prebuild: staged ${name}@${manifest.version} in ${out}`);

const dest = resolve(values['pack-destination'] ?? 'build');
mkdirSync(dest, { recursive: true });
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
const r = spawnSync(npm[0], [...npm.slice(1), 'pack', '--pack-destination', dest], { cwd: out, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
if (r.status !== 0) process.exit(r.status ?? 1);
console.log(`prebuild: ${join(dest, r.stdout.trim().split('\n').pop())}`);
