// The test command (npm test): the C++ core tests (ctest, no Node involved), then every
// TypeScript test file with Node's test runner.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`test: ${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

const jobs = String(Math.max(1, cpus().length));
run('cmake', ['-S', '.', '-B', 'build-tests', '-DCMAKE_BUILD_TYPE=Release']);
run('cmake', ['--build', 'build-tests', '-j', jobs]);
run('ctest', ['--test-dir', 'build-tests', '--output-on-failure']);

const dir = join('dist', 'test');
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => join(dir, f));
run(process.execPath, ['--test', '--test-concurrency=1', ...files]);
