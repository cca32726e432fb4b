// `--executor slurm` against a real SLURM (scripts/slurm-local.sh starts a one-node cluster; CI runs
// it and sets SEMDEDUP_REQUIRE_SLURM=1, so that there a missing SLURM is a failure, not a skip):
// a 200,000-row dataset in job arrays of 4 tasks per stage gives the single-process run's bytes;
// one dedup task cancelled midway (scancel) fails the run with the task and its log named, and
// rerunning the same command completes with the same bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, runCli, tmpFolder } from './helpers.js';
import { assertSameOutputs, assertSameRecords, writeConfig, writeDataset } from './plan-helpers.js';
import { readPlan } from '../src/plan/plan.js';

function slurmUp(): string | undefined {
  const r = spawnSync('sinfo', ['-h', '-o', '%T'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `sinfo: ${r.error?.message ?? r.stderr.trim()}`;
  return /idle|mixed|allocated/.test(r.stdout) ? undefined : `no node is up (sinfo: ${r.stdout.trim() || 'nothing'})`;
}

const missing = slurmUp();
const required = process.env.SEMDEDUP_REQUIRE_SLURM === '1';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

test('SLURM: job arrays give the single-process bytes; a dedup task cancelled midway, then the same command completes', { skip: !required && missing ? `SLURM is not running here (${missing}); start it with scripts/slurm-local.sh` : false }, async () => {
  assert.equal(missing, undefined, `SLURM is required here (SEMDEDUP_REQUIRE_SLURM=1) but ${missing}`);
  const dir = tmpFolder('slurm');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 200_000, dim: 64, clusters: 50, seed: 3 });
    const single = join(dir, 'single');
    const out = join(dir, 'slurm');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: emb, k: 50, spherical: true, eps_list: [0.01, 0.05, 0.1], output_dir: single });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 300_000);
    assert.equal(r.code, 0, r.stderr);

    const args = [CLI, 'run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'slurm', '--tasks', '4'];
    const child = spawn(process.execPath, args, { cwd: dir });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    // Wait for a dedup task to start, then cancel it with scancel.
    const stateDir = join(out, 'semdedup', 'plan', 'state');
    let victim: { job: string; index: number } | undefined;
    const t0 = Date.now();
    while (!victim && Date.now() - t0 < 240_000) {
      if (existsSync(stateDir))
        for (const f of readdirSync(stateDir).filter((f) => f.startsWith('dedup.'))) {
          try {
            const s = JSON.parse(readFileSync(join(stateDir, f), 'utf8')) as { state: string; job?: string; index: number };
            if (s.state === 'running' && s.job) victim = { job: s.job, index: s.index };
          } catch {
            // being written
          }
        }
      if (!victim) await sleep(50);
    }
    assert.ok(victim, `no dedup task started: ${stderr}`);
    const sc = spawnSync('scancel', [victim.job], { encoding: 'utf8' });
    assert.equal(sc.status, 0, sc.stderr);
    const code = await exited;
    assert.equal(code, 1, `the run fails when a task is cancelled:\n${stderr}`);
    const log = join(out, 'semdedup', 'plan', 'logs', `dedup.${victim.index}.log`);
    assert.ok(stderr.includes(`dedup task ${victim.index} (job ${victim.job}): killed by SIGTERM`), stderr);
    assert.ok(stderr.includes(`log: ${log}`), stderr);
    assert.match(readFileSync(log, 'utf8'), /CANCELLED/);
    assert.match(stderr, /submitted train \d+ \(1 task\), assign \d+ \(4 tasks\), group \d+ \(4 tasks\), dedup \d+ \(4 tasks\), extract \d+ \(1 task\)/);
    assert.equal(stdout, '');
    const plan = readPlan(join(out, 'semdedup', 'plan.json'));
    for (const s of ['assign', 'group', 'dedup']) assert.equal(plan.stages.find((x) => x.name === s)!.tasks, 4);
    r = runCli(['status', out], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`failed:\\n  dedup ${victim.index}: killed by SIGTERM \\(job ${victim.job}\\)`));
    assert.match(r.stdout, /^\s+extract\s+1\s+0\s+0\s+0\s+1$/m);

    // The same command again: only what is not complete is submitted, and the bytes are the single run's.
    r = runCli(args.slice(1), dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\(resumed\)/);
    assert.match(r.stderr, /submitted dedup \d+ \(1 task\), extract \d+ \(1 task\)/);
    assert.match(r.stdout, /done in .* \(slurm; 2 tasks run, 12 found complete\)/);
    assertSameOutputs(single, out);
    assertSameRecords(single, out);
    r = runCli(['status', out], dir);
    assert.match(r.stdout, /complete: all 14 tasks done/);
    // --no-wait on a complete plan submits nothing.
    r = runCli([...args.slice(1), '--no-wait'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /submitted: nothing \(every task is complete\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SLURM: an output_dir holding $(...), backticks, quotes, a space and a % runs nothing and completes with the single-process bytes', { skip: !required && missing ? `SLURM is not running here (${missing}); start it with scripts/slurm-local.sh` : false }, async () => {
  assert.equal(missing, undefined, `SLURM is required here (SEMDEDUP_REQUIRE_SLURM=1) but ${missing}`);
  const dir = tmpFolder('slurm-quote');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 3000, dim: 16, clusters: 6, seed: 5 });
    const single = join(dir, 'single');
    const out = join(dir, `sl $(touch PWNED_a) \`touch PWNED_b\` it's "q" 50%a;touch PWNED_c`);
    // JSON strings are YAML double-quoted scalars: the path reaches the engine as it is.
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: emb, k: 6, spherical: true, eps_list: [0.05], output_dir: JSON.stringify(single) });
    let r = runCli(['run', '-c', cfg, '-q'], dir, 120_000);
    assert.equal(r.code, 0, r.stderr);
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out}`, '--executor', 'slurm', '--tasks', '1', '-q'], dir, 240_000);
    assert.equal(r.code, 0, r.stderr);
    const pwned = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? pwned(join(d, e.name)) : e.name.startsWith('PWNED') ? [join(d, e.name)] : []));
    // The jobs run in the submission folder (dir) and write in the output folder, both below dir.
    assert.deepEqual(pwned(dir), [], 'nothing of the path was run');
    assertSameOutputs(single, out);
    // SLURM's output file is the task's log, under the exact path.
    const log = readFileSync(join(out, 'semdedup', 'plan', 'logs', 'train.0.log'), 'utf8');
    assert.match(log, /semdedup\[train 0\]: start/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
