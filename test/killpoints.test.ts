// Kill anywhere, lose nothing: a run is killed (SIGKILL, injected by strace on the N-th rename:
// every commit point in turn, an atomic write's rename being its commit) on a fresh folder and
// on a folder holding a completed run with other parameters. After each kill, `extract` for the
// new and for the old parameters either refuses or returns exactly the list of an uninterrupted
// run; then a rerun completes with the bytes of an uninterrupted run and no temp file is left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { CLI, runCli } from './helpers.js';
import { digest, makeData, runArgs, tempFiles, type Data } from './rel-helpers.js';

const EPS = ['--eps-list', '0.01,0.05'];
const NEW = ['--set', 'which_to_keep=easy', '--set', 'seed=99'];
const OLD = ['--set', 'which_to_keep=hard', '--set', 'seed=1234'];

function strace(args: string[], cwd: string): { status: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string } {
  const r = spawnSync('strace', args, { cwd, encoding: 'utf8', timeout: 120_000 });
  if (r.error) throw new Error(`strace is needed (scripts/setup.sh installs it): ${r.error.message}`);
  return { status: r.status, signal: r.signal, stderr: r.stderr, stdout: r.stdout };
}

/** The renames of an uninterrupted run of `args` (all must be rename(2): the injection counts them). */
function countRenames(d: Data, out: string, args: string[]): number {
  const trace = path.join(d.dir, 'trace.txt');
  const r = strace(['-f', '-qq', '-o', trace, '-e', 'trace=rename,renameat,renameat2', process.execPath, CLI, ...args], d.dir);
  assert.equal(r.status, 0, `traced run failed: ${r.stderr}`);
  const lines = readFileSync(trace, 'utf8').split('\n').filter((l) => /rename/.test(l));
  assert.ok(lines.every((l) => /\brename\(/.test(l)), 'every commit is a rename(2)');
  void out;
  return lines.length;
}

function extractList(d: Data, out: string, params: string[], file: string): { code: number | null; list?: string; stderr: string } {
  rmSync(file, { force: true });
  const r = runCli(['extract', ...runArgs(d, out, params), '--eps', '0.01', '--output', file], d.dir);
  return { code: r.code, stderr: r.stderr, ...(r.code === 0 ? { list: readFileSync(file, 'utf8') } : {}) };
}

interface Outcome {
  points: number;
  extractRefused: number;
  extractRight: number;
}

async function killEverywhere(d: Data, base: string | undefined, tag: string): Promise<Outcome> {
  const newArgs = (out: string) => ['run', ...runArgs(d, out, [...NEW, ...EPS])];
  // References: uninterrupted runs for the new and (if any) the old parameters.
  const refNew = path.join(d.dir, `ref-new-${tag}`);
  assert.equal(runCli(newArgs(refNew), d.dir).code, 0);
  const wantNew = digest(refNew);
  const wantNewList = readFileSync(path.join(refNew, 'kept_eps0.01.txt'), 'utf8');
  const wantOldList = base ? readFileSync(path.join(base, 'kept_eps0.01.txt'), 'utf8') : undefined;
  if (base) assert.notEqual(wantOldList, wantNewList, 'the old and new parameters must give different lists');
  const work = path.join(d.dir, `work-${tag}`);
  // The folder a kill starts from: empty, or holding a completed run with the old parameters
  // (made afresh each time by a run in place).
  const prepare = () => {
    rmSync(work, { recursive: true, force: true });
    if (base) assert.equal(runCli(['run', ...runArgs(d, work, [...OLD, ...EPS])], d.dir).code, 0);
  };
  prepare();
  const points = countRenames(d, work, newArgs(work));
  assert.ok(points >= 15, `${tag}: only ${points} commit points`);
  const o: Outcome = { points, extractRefused: 0, extractRight: 0 };
  const listFile = path.join(d.dir, 'list.txt');
  for (let i = 1; i <= points + 1; i++) {
    prepare();
    const r = strace(['-f', '-qq', '-o', '/dev/null', '-e', 'trace=rename', '-e', `inject=rename:signal=KILL:when=${i}`, process.execPath, CLI, ...newArgs(work)], d.dir);
    if (i <= points) assert.notEqual(r.status, 0, `${tag}: the run was not killed at commit point ${i}`);
    else assert.equal(r.status, 0, `${tag}: a run with no kill point left failed: ${r.stderr}`);
    // In between: extract never returns a wrong list.
    for (const [params, want, what] of [[NEW, wantNewList, 'new'], ...(wantOldList ? [[OLD, wantOldList, 'old']] : [])] as [string[], string, string][]) {
      const e = extractList(d, work, params, listFile);
      if (e.code === 0) {
        assert.equal(e.list, want, `${tag}: killed at commit point ${i}, extract for the ${what} parameters returned a wrong list`);
        o.extractRight++;
      } else {
        assert.match(e.stderr, /semdedup: error: .*rerun semdedup|semdedup: error: .*not found: run the/, `${tag}: point ${i}: extract (${what}) failed otherwise: ${e.stderr}`);
        o.extractRefused++;
      }
    }
    // The rerun completes with the bytes of an uninterrupted run, and no temp file is left.
    const re = runCli(newArgs(work), d.dir);
    assert.equal(re.code, 0, `${tag}: rerun after a kill at commit point ${i} failed: ${re.stderr}`);
    assert.deepEqual(digest(work), wantNew, `${tag}: after a kill at commit point ${i}, the rerun's files differ from an uninterrupted run`);
    assert.deepEqual(tempFiles(work), [], `${tag}: temp files left after a kill at commit point ${i} and a rerun`);
    assert.ok(existsSync(path.join(work, 'kept_eps0.01.txt')));
  }
  return o;
}

test('kill points: a run killed at every commit point on a fresh folder; rerun gives identical bytes', async () => {
  const d = makeData('kill-fresh', { n: 300 });
  const o = await killEverywhere(d, undefined, 'fresh');
  process.stdout.write(`# kill points (fresh folder): ${o.points} points; extract in between: ${o.extractRefused} refused, ${o.extractRight} right, 0 wrong\n`);
});

test('kill points: a run with other parameters killed at every commit point on a completed folder; extract never wrong', async () => {
  const d = makeData('kill-done', { n: 300 });
  const base = path.join(d.dir, 'base');
  assert.equal(runCli(['run', ...runArgs(d, base, [...OLD, ...EPS])], d.dir).code, 0);
  const o = await killEverywhere(d, base, 'completed');
  process.stdout.write(`# kill points (folder with a completed run, other parameters): ${o.points} points; extract in between: ${o.extractRefused} refused, ${o.extractRight} right, 0 wrong\n`);
});
