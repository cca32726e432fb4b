// Trust boundaries (README, "Threat model"): the engine writes only its own files, never through a
// link planted in the output folder; a stopped planned run leaves no worker behind; bad contents
// and bad options are refused before anything is created; no command overwrites the run's inputs
// or committed files; what the engine writes for people (CSV, HTML) carries no formula and loads
// nothing from the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, tmpFolder } from './helpers.js';
import { writeConfig, writeDataset } from './plan-helpers.js';
import { writeNpy } from '../src/io/npy.js';
import { makePlan } from '../src/plan/plan.js';
import { loadConfigFiles } from '../src/config.js';

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

test('links: a link planted at semdedup/lock, at semdedup/, at a folder inside it or at a task log is refused, and nothing is written through it', () => {
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

    // A folder inside the engine's folder (dedup's parts, a planned run's parts) a link elsewhere.
    const out4 = join(dir, 'out4');
    mkdirSync(join(out4, 'semdedup', 'plan'), { recursive: true });
    symlinkSync(elsewhere, join(out4, 'semdedup', 'parts'));
    symlinkSync(elsewhere, join(out4, 'semdedup', 'plan', 'parts'));
    for (const cmd of [['run'], ['run', '--executor', 'local', '--tasks', '1']]) {
      r = runCli([...cmd, '-c', cfg, '--set', `output_dir=${out4}`, '-q'], dir);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /semdedup\/(plan\/)?parts is a symbolic link/);
      assert.deepEqual(readdirSync(elsewhere), [], 'nothing written through a link inside the engine\'s folder');
    }

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

test('signals: SIGTERM or SIGINT to a local planned run stops and reaps its workers; a rerun completes and leaves no temporary file', async () => {
  const dir = tmpFolder('trust-sigterm');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 120_000, dim: 64, clusters: 8, seed: 2 });
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const out = join(dir, `out_${signal}`);
      const cfg = writeConfig(dir, `${signal}.yaml`, { embeddings: emb, k: 8, spherical: true, eps_list: [0.05], output_dir: out, threads: 1 });
      const args = ['run', '-c', cfg, '--executor', 'local', '--tasks', '2', '--workers', '2'];
      const child = spawn(process.execPath, [join(process.cwd(), 'dist', 'src', 'cli.js'), ...args], { cwd: dir });
      let stderr = '';
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      // Wait until workers run, then stop the parent as a scheduler, `kill` or Ctrl-C would.
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
      assert.ok(workers.size > 0, `${signal}: no worker started: ${stderr}`);
      child.kill(signal);
      // Ctrl-C exits 130 (128 + SIGINT), as shells expect; SIGTERM is a failed run (1).
      assert.equal(await exited, signal === 'SIGINT' ? 130 : 1, `${signal}: the run reports the interruption:\n${stderr}`);
      assert.match(stderr, signal === 'SIGTERM' ? /SIGTERM: stopping the tasks/ : /interrupted; completed parts are kept/);
      // Every worker the run started is gone (not running, not a zombie) once the parent has exited.
      for (const pid of workers) assert.equal(alive(pid), false, `${signal}: worker ${pid} still alive after the parent exited`);
      const r = runCli(args, dir, 300_000);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(walk(out).filter((f) => /\.tmp-\d+-/.test(f)), [], 'no temporary file left');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A dataset of n unit rows with near-duplicates, its config, a finished single run, and text ids. */
function finishedRun(dir: string, ids: string[] | undefined, extra: Record<string, unknown> = {}): { cfg: string; out: string; emb: string } {
  const n = ids?.length ?? 2000;
  const emb = writeDataset(dir, 'x.npy', { n, dim: 16, clusters: 4, seed: 7, dupFraction: 0.3 });
  const out = (extra.output_dir as string | undefined) ?? join(dir, 'out');
  const keys: Record<string, unknown> = { embeddings: emb, k: 4, spherical: true, eps_list: [0.05], output_dir: JSON.stringify(out), ...extra };
  if (ids) {
    writeFileSync(join(dir, 'ids.txt'), ids.join('\n') + '\n');
    keys.ids = join(dir, 'ids.txt');
    keys.ids_format = 'text';
  }
  keys.output_dir = JSON.stringify(out);
  const cfg = writeConfig(dir, 'c.yaml', keys);
  const r = runCli(['run', '-c', cfg, '-q'], dir);
  assert.equal(r.code, 0, r.stderr);
  return { cfg, out, emb };
}

/** Rows of a CSV as Python's csv module reads them (an independent reader). */
function pythonCsv(file: string): string[][] {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import csv,json,sys; print(json.dumps(list(csv.reader(open(sys.argv[1], newline="")))))', file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as string[][];
}

test('CSV: ids a spreadsheet would read as formulas get a leading quote in explain and decontaminate CSVs; other ids are unchanged', () => {
  const dir = tmpFolder('trust-csv');
  try {
    const risky = ['=HYPERLINK("http://x","y")', '+1+1', '-2', '@SUM(A1)', '\tTAB', "'quoted", 'plain,comma', 'a"b'];
    const ids = Array.from({ length: 2000 }, (_, i) => (i < risky.length * 40 ? `${risky[i % risky.length]}_${i}` : `id_${i}`));
    const { cfg, out, emb } = finishedRun(dir, ids);
    const expected = (id: string) => (/^[=+\-@\t\r]/.test(id) ? `'${id}` : id);
    let r = runCli(['explain', '-c', cfg, '--eps', '0.05', '--near', '2', '-o', join(dir, 'e.csv'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    const rows = pythonCsv(join(dir, 'e.csv'));
    assert.equal(rows.length, 2001);
    let neutralised = 0;
    for (const row of rows.slice(1)) {
      const id = ids[Number(row[1])]!;
      assert.equal(row[0], expected(id));
      if (row[0] !== id) neutralised++;
      if (row[6] !== '') assert.equal(row[5], expected(ids[Number(row[6])]!));
    }
    assert.ok(neutralised >= 5 * 40, `${neutralised} risky ids neutralised`);
    // decontaminate's matches CSV: the data against itself removes every row.
    r = runCli(['decontaminate', '-c', cfg, '--reference', emb, '--reference-ids', join(dir, 'ids.txt'), '--eps', '0.01', '--matches', join(dir, 'm.csv'), '-o', join(dir, 'kept.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    const m = pythonCsv(join(dir, 'm.csv'));
    assert.equal(m.length, 2001);
    for (const row of m.slice(1)) {
      assert.equal(row[0], expected(ids[Number(row[1])]!));
      assert.equal(row[2], expected(ids[Number(row[3])]!));
    }
    assert.ok(existsSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('refused before anything is created: NaN, Inf, zero and un-normalised rows, a wrong shape: no output folder, no lock', () => {
  const dir = tmpFolder('trust-early');
  try {
    const good = new Float32Array(400 * 8);
    for (let i = 0; i < 400; i++) good[i * 8 + (i % 8)] = 1;
    const cases: [string, (a: Float32Array) => void, RegExp][] = [
      ['nan', (a) => (a[5 * 8 + 3] = NaN), /row 5 holds NaN or Inf/],
      ['inf', (a) => (a[7 * 8] = Infinity), /row 7 holds NaN or Inf/],
      ['zero', (a) => a.fill(0, 9 * 8, 10 * 8), /row 9 is all zeros/],
      ['unnormalised', (a) => (a[11 * 8 + 3] = 2), /row 11 is not L2-normalised/],
    ];
    for (const [name, spoil, message] of cases) {
      const a = good.slice();
      spoil(a);
      const file = join(dir, `${name}.npy`);
      writeNpy(file, a, { shape: [400, 8] });
      for (const cmd of [['run'], ['cluster'], ['run', '--executor', 'local', '--tasks', '2']]) {
        const out = join(dir, `out_${name}_${cmd.length}`);
        const cfg = writeConfig(dir, `${name}.yaml`, { embeddings: file, k: 4, spherical: true, eps_list: [0.05], output_dir: out });
        const r = runCli([...cmd, '-c', cfg, '-q'], dir);
        assert.equal(r.code, 1, `${name} ${cmd.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, message);
        assert.equal(existsSync(out), false, `${name} ${cmd.join(' ')}: the output folder was created before the rows were refused`);
      }
      // dedup on a folder made by a good run: no lock and nothing new in it.
    }
    // A wrong shape: a 1-D .npy, and a raw memmap whose size is not N x D.
    writeNpy(join(dir, 'flat.npy'), good, { shape: [400 * 8] });
    writeFileSync(join(dir, 'odd.f32'), Buffer.alloc(4 * 8 * 10 + 4));
    for (const [file, more] of [[join(dir, 'flat.npy'), {}], [join(dir, 'odd.f32'), { embeddings_format: 'memmap', dim: 8 }]] as const) {
      const out = join(dir, 'out_shape');
      const cfg = writeConfig(dir, 'shape.yaml', { embeddings: file, k: 4, eps_list: [0.05], output_dir: out, ...more });
      const r = runCli(['run', '-c', cfg, '-q'], dir);
      assert.notEqual(r.code, 0, r.stderr);
      assert.equal(existsSync(out), false, `${file}: the output folder was created before the shape was refused`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('outputs: -o, --output and --matches refuse the run\'s inputs, its committed files and the engine\'s folder; nothing is overwritten', () => {
  const dir = tmpFolder('trust-overwrite');
  try {
    const ids = Array.from({ length: 2000 }, (_, i) => `id_${i}`);
    const { cfg, out, emb } = finishedRun(dir, ids);
    const committed = ['kmeans_centroids.npy', 'nearest_cent.npy', join('semdedup', 'M.npy'), join('semdedup', 'keep_order.npy')].map((f) => join(out, f));
    const link = join(dir, 'link.npy');
    symlinkSync(emb, link);
    const victims = [emb, join(dir, 'ids.txt'), cfg, link, join(out, 'semdedup', 'new.csv'), ...committed];
    const before = new Map(victims.filter(existsSync).map((f) => [f, readFileSync(f)]));
    for (const v of victims) {
      for (const args of [
        ['explain', '--eps', '0.05', '-o', v],
        ['extract', '--eps', '0.05', '-o', v],
        ['report', '-o', v],
        ['decontaminate', '--reference', emb, '--eps', '0.01', '-o', v, '--matches', join(dir, 'm.csv')],
        ['decontaminate', '--reference', emb, '--eps', '0.01', '--matches', v, '-o', join(dir, 'k.txt')],
      ]) {
        const r = runCli([...args, '-c', cfg, '-q'], dir);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /inputs or committed files|engine's own folder/);
      }
    }
    for (const [f, b] of before) assert.ok(readFileSync(f).equals(b), `${f} unchanged`);
    assert.equal(existsSync(join(out, 'semdedup', 'new.csv')), false);
    // An ordinary file is written.
    const r = runCli(['explain', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'fine.csv'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('options: curve keeps the decimals given; --sample, --recall-sample and an empty reference are refused clearly', async () => {
  const dir = tmpFolder('trust-options');
  try {
    const { cfg, out } = finishedRun(dir, undefined);
    const curve = (...a: string[]) => {
      const r = runCli(['curve', '-c', cfg, '--json', ...a], dir);
      assert.equal(r.code, 0, `${a.join(' ')}: ${r.stderr}`);
      return (JSON.parse(r.stdout) as { points: { eps: number }[] }).points.map((p) => p.eps);
    };
    assert.deepEqual(curve('--step', '2'), [0.001]);
    assert.deepEqual(curve('--from', '0.000004', '--step', '0.01').slice(0, 3), [0.000004, 0.010004, 0.020004]);
    assert.deepEqual(curve('--from', '0.000015', '--to', '0.003').slice(0, 3), [0.000015, 0.001015, 0.002015]);
    assert.equal(curve().length, 300);

    const refused = (args: string[], code: number, message: RegExp) => {
      const r = runCli([...args, '-q'], dir);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    };
    for (const v of ['-1', '1.5', 'abc']) {
      refused(['report', '-c', cfg, '--sample', v], 2, new RegExp(`--sample: expected a non-negative integer .*got '${v.replace('.', '\\.')}'`));
      refused(['decontaminate', '-c', cfg, '--reference', join(dir, 'x.npy'), '--eps', '0.01', '--within-clusters', '--recall-sample', v], 2, /--recall-sample: expected a non-negative integer/);
    }
    writeFileSync(join(dir, 'empty.npy'), '');
    refused(['decontaminate', '-c', cfg, '--reference', join(dir, 'empty.npy'), '--eps', '0.01'], 1, /empty\.npy: the reference file is empty \(0 bytes\)/);

    assert.ok(existsSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('threads and tasks: task --threads refuses what is not a non-negative integer and caps a huge count; --tasks is capped by the rows', () => {
  const dir = tmpFolder('trust-threads');
  try {
    const emb = writeDataset(dir, 'x.npy', { n: 2000, dim: 16, clusters: 4, seed: 7 });
    const cfg = writeConfig(dir, 'p.yaml', { embeddings: emb, k: 4, spherical: true, eps_list: [0.05], output_dir: join(dir, 'planned') });
    // The plan of 100,000 tasks over 2,000 rows: one task a stage (checked before running anything).
    const made = makePlan(loadConfigFiles([cfg]), { tasks: 100_000 });
    assert.deepEqual(made.stages.map((s) => s.tasks), [1, 1, 1, 1, 1]);
    const plan = join(dir, 'planned', 'semdedup', 'plan.json');
    let r = runCli(['run', '-c', cfg, '--executor', 'local', '--tasks', '100000', '--workers', '1'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /--tasks 100000 is more than the work holds \(2000 rows, 4 clusters: at most 1 task a stage, one per 4096 rows\); planning train 1, assign 1, group 1, dedup 1, extract 1/);
    const p = JSON.parse(readFileSync(plan, 'utf8')) as { stages: { name: string; tasks: number }[] };
    assert.deepEqual(p.stages.map((s) => s.tasks), [1, 1, 1, 1, 1]);
    for (const v of ['-3', 'abc', '1.5', '', '1e3']) {
      r = runCli(['task', 'dedup', '0', '--plan', plan, '--threads', v], dir);
      assert.equal(r.code, 2, `--threads '${v}': ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`--threads must be a non-negative integer \\(0: all cores\\), got '${v.replace('.', '\\.')}'`));
    }
    // A huge count is capped with a warning (and the task, complete, does nothing).
    r = runCli(['task', 'dedup', '0', '--plan', plan, '--threads', '99999999'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /threads 99999999 is more than 4 × the \d+ cores; using \d+/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a folder name holding <b> is a name, not a template placeholder; the report escapes it', () => {
  const dir = tmpFolder('trust-angle');
  try {
    const out = join(dir, 'run_<b>x</b> & "q"');
    finishedRun(dir, undefined, { output_dir: out });
    const r = runCli(['report', '-c', join(dir, 'c.yaml'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    assert.ok(!html.includes('<b>x</b>'), 'the folder name is escaped');
    assert.ok(html.includes('run_&lt;b&gt;x&lt;/b&gt; &amp; &quot;q&quot;'));
    // A real template placeholder is still refused.
    const t = writeConfig(dir, 't.yaml', { embeddings: '"<your path>.npy"', k: 4, output_dir: join(dir, 'o') });
    const p = runCli(['run', '-c', t], dir);
    assert.equal(p.code, 2);
    assert.match(p.stderr, /template placeholder '<your path>'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('signals: the temporary file of a zombie writer (exited, not reaped) is removed when the folder is next locked', async () => {
  const dir = tmpFolder('trust-zombie');
  // A zombie: a child of a shell that then becomes `sleep`, which never reaps it.
  const holder = spawn('bash', ['-c', 'sh -c "sleep 0.3" & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const { out, cfg } = finishedRun(dir, undefined);
    const pid = await new Promise<number>((resolve) => holder.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))));
    for (let i = 0; i < 200 && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); i++) await sleep(10);
    assert.match(readFileSync(`/proc/${pid}/stat`, 'utf8'), /\) Z/, 'the writer is a zombie');
    const temp = join(out, 'semdedup', `M.npy.tmp-${pid}-0123456789ab`);
    writeFileSync(temp, 'partial');
    const r = runCli(['extract', '-c', cfg, '--eps', '0.05', '-o', join(dir, 'kept.txt'), '-q'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(existsSync(temp), false, 'the zombie\'s temporary file is removed');
  } finally {
    holder.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
