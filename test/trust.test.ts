// Trust boundaries (README, "Threat model"): the engine writes only its own files, never through a
// link planted in the output folder; a stopped planned run leaves no worker behind; bad contents
// and bad options are refused before anything is created; no command overwrites the run's inputs
// or committed files; what the engine writes for people (CSV, HTML) carries no formula and loads
// nothing from the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tmpFolder } from './helpers.js';
import { writeConfig, writeDataset } from './plan-helpers.js';

function walk(d: string): string[] {
  if (!existsSync(d)) return [];
  return readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie answers kill(0) but is dead: its state in /proc is Z.
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

test('links: a link planted at semdedup/lock, at semdedup/ or at a task log is refused, and nothing is written through it', () => {
  const dir = tmpFolder('trust-links');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 2000, dim: 16, clusters: 4, seed: 1 });
    const victim = join(dir, 'victim.txt');
    writeFileSync(victim, 'precious\n');
    const out = join(dir, 'out');
    mkdirSync(join(out, 'semdedup'), { recursive: true });
    symlinkSync(victim, join(out, 'semdedup', 'lock'));
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: emb, k: 4, spherical: true, eps_list: [0.05], output_dir: out });
    let r = runCli(['run', '-c', cfg, '-q'], dir);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /semdedup\/lock is a symbolic link/);
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n', 'nothing written through the link');
    for (const cmd of [['cluster'], ['run', '--executor', 'local', '--tasks', '1']]) {
      r = runCli([...cmd, '-c', cfg, '-q'], dir);
      assert.notEqual(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
      assert.equal(readFileSync(victim, 'utf8'), 'precious\n', `${cmd.join(' ')}: nothing written through the link`);
    }

    // The engine's folder itself a link to a folder elsewhere.
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    const out2 = join(dir, 'out2');
    mkdirSync(out2);
    symlinkSync(elsewhere, join(out2, 'semdedup'));
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out2}`, '-q'], dir);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /out2\/semdedup is a symbolic link/);
    assert.deepEqual(readdirSync(elsewhere), [], 'nothing written in the folder the link names');

    // A task's log (local executor).
    const out3 = join(dir, 'out3');
    mkdirSync(join(out3, 'semdedup', 'plan', 'logs'), { recursive: true });
    symlinkSync(victim, join(out3, 'semdedup', 'plan', 'logs', 'train.0.log'));
    r = runCli(['run', '-c', cfg, '--set', `output_dir=${out3}`, '--executor', 'local', '--tasks', '1', '-q'], dir);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /train\.0\.log is a symbolic link/);
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    assert.ok(lstatSync(join(out3, 'semdedup', 'plan', 'logs', 'train.0.log')).isSymbolicLink(), 'the link itself is left for the user');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('signals: SIGTERM to a local planned run stops and reaps its workers; a rerun completes and leaves no temporary file', async () => {
  const dir = tmpFolder('trust-sigterm');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 120_000, dim: 64, clusters: 8, seed: 2 });
    const out = join(dir, 'out');
    const cfg = writeConfig(dir, 'c.yaml', { embeddings: emb, k: 8, spherical: true, eps_list: [0.05], output_dir: out, threads: 1 });
    const args = ['run', '-c', cfg, '--executor', 'local', '--tasks', '2', '--workers', '2'];
    const child = spawn(process.execPath, [join(process.cwd(), 'dist', 'src', 'cli.js'), ...args], { cwd: dir });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((res) => child.on('exit', (code, sig) => res({ code, sig })));
    // Wait until workers run, then stop the parent as a scheduler or `kill` would.
    const stateDir = join(out, 'semdedup', 'plan', 'state');
    const workers = new Set<number>();
    const t0 = Date.now();
    while (workers.size === 0 && Date.now() - t0 < 120_000) {
      for (const f of existsSync(stateDir) ? readdirSync(stateDir) : []) {
        try {
          const s = JSON.parse(readFileSync(join(stateDir, f), 'utf8')) as { state: string; pid: number };
          if (s.state === 'running') workers.add(s.pid);
        } catch {
          // being written
        }
      }
      if (workers.size === 0) await sleep(20);
    }
    assert.ok(workers.size > 0, `no worker started: ${stderr}`);
    child.kill('SIGTERM');
    const { code } = await exited;
    assert.equal(code, 1, `the run reports the interruption:\n${stderr}`);
    assert.match(stderr, /SIGTERM: stopping the tasks/);
    // Every worker the run started is gone (not running, not a zombie) once the parent has exited.
    for (const pid of workers) assert.equal(alive(pid), false, `worker ${pid} still alive after the parent exited`);
    const r = runCli(args, dir, 300_000);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(walk(out).filter((f) => /\.tmp-\d+-/.test(f)), [], 'no temporary file left');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
