// Packs the locally built addon as the prebuilt binary for this platform
// (prebuilds/<platform>-<arch>/semdedup.node), which the loader and the install hook prefer.
// It links FAISS statically and OpenBLAS/OpenMP dynamically (libopenblas0, libgomp1 at run time).
import { copyFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const src = join('build', 'Release', 'semdedup.node');
if (!existsSync(src)) {
  console.error(`${src} not found: run npm run build:native first`);
  process.exit(1);
}
const dir = join('prebuilds', `${process.platform}-${process.arch}`);
mkdirSync(dir, { recursive: true });
copyFileSync(src, join(dir, 'semdedup.node'));
console.log(`prebuilt binary: ${join(dir, 'semdedup.node')}`);
