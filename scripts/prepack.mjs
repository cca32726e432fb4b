// npm pack / npm publish: builds what the tarball ships, from a clean dist/ (JavaScript and
// declarations; no source maps, whose .ts sources are not shipped). The addon itself comes in the
// platform package (scripts/prebuild.mjs) or is built at install time (scripts/install.cjs).
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
rmSync('dist', { recursive: true, force: true });
const tsc = require.resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json', '--sourceMap', 'false'], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
