// The command line as a newcomer uses it: the short form (`semdedup run emb.npy --ids ids.txt -k 10
// -o out/`) with every kind of positional input, the output folder as the argument of the commands
// that read a finished run, outputs that are the standard output, FIFOs, devices and links (special
// files made here, never in /dev), short usage errors, JSON errors, a closed pipe, Ctrl-C, the
// progress bar on a terminal and quiet lines elsewhere, POSIX kept files and `--order input`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, linkSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { writeNpy } from '../src/io/npy.js';
import { SynthDataset } from '../tools/synth.js';
import { CLI, runCli, tmpFolder, type CliResult } from './helpers.js';

const N = 2000;
const D = 16;
const K = 8;
const ds = new SynthDataset({ n: N, dim: D, clusters: K, seed: 11 });
const X = new Float32Array(N * D);
ds.fillRows(0, N, X);
const IDS = Array.from({ length: N }, (_, i) => `doc-${i}`);

function ok(r: CliResult, what: string): CliResult {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/** A folder with emb.npy, emb.f32 (raw), ids.txt, shards/ (3 .npy with ids/), and a run of it in out/. */
function dataFolder(tag: string): string {
  const dir = tmpFolder(tag);
  writeNpy(join(dir, 'emb.npy'), X, { shape: [N, D] });
  writeFileSync(join(dir, 'emb.f32'), Buffer.from(X.buffer, X.byteOffset, X.byteLength));
  writeFileSync(join(dir, 'ids.txt'), IDS.map((s) => `${s}\n`).join(''));
  mkdirSync(join(dir, 'shards'));
  mkdirSync(join(dir, 'shard-ids'));
  const cuts = [0, 700, 1300, N];
  for (let s = 0; s < 3; s++) {
    writeNpy(join(dir, 'shards', `part-${s}.npy`), X.slice(cuts[s]! * D, cuts[s + 1]! * D), { shape: [cuts[s + 1]! - cuts[s]!, D] });
    writeFileSync(join(dir, 'shard-ids', `part-${s}.txt`), IDS.slice(cuts[s]!, cuts[s + 1]!).join('\n') + '\n');
  }
  return dir;
}

const kept = (dir: string, eps = 0.05) => readFileSync(join(dir, `kept_eps${eps}.txt`), 'utf8');

test('run: positional input of every kind (.npy, raw with --dim, shards as a list and as a folder, Parquet, an embed folder) and the first-class flags give the --set run\'s kept ids', async () => {
  const dir = dataFolder('front-run');
  const ref = join(dir, 'ref');
  ok(runCli(['run', '--set', 'embeddings=emb.npy', '--set', 'ids=ids.txt', '--set', `k=${K}`, '--set', `output_dir=${ref}`, '--eps-list', '0.05', '-q'], dir), 'reference run');
  const want = kept(ref);
  // A POSIX text file: every id followed by a newline, so `wc -l` counts them all.
  assert.ok(want.endsWith('\n'));
  const summary = JSON.parse(readFileSync(join(ref, 'semdedup', 'summary.json'), 'utf8')) as { eps: { kept: number }[] };
  assert.equal(want.split('\n').length - 1, summary.eps[0]!.kept);

  const short = ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'a/', '--eps-list', '0.05'], dir), 'short form');
  assert.equal(kept(join(dir, 'a')), want);
  // The path of every output it wrote.
  assert.match(short.stdout, new RegExp(`eps 0\\.05: .* -> ${join(dir, 'a', 'kept_eps0.05.txt').replace(/[.]/g, '\\.')}`));
  assert.match(short.stdout, /summary: .*summary\.json/);
  ok(runCli(['run', 'emb.f32', '--dim', String(D), '--ids', 'ids.txt', '--ncentroids', String(K), '--output-dir', 'b', '--eps-list', '0.05', '-q'], dir), 'raw memmap with --dim');
  assert.equal(kept(join(dir, 'b')), want);
  ok(runCli(['run', 'shards/part-0.npy', 'shards/part-1.npy', 'shards/part-2.npy', '--ids', 'shard-ids', '-k', String(K), '-o', 'c', '--eps-list', '0.05', '-q'], dir), 'shards as a list');
  assert.equal(kept(join(dir, 'c')), want);
  ok(runCli(['run', 'shards', '--ids', 'shard-ids', '-k', String(K), '-o', 'd', '--eps-list', '0.05', '-q'], dir), 'a folder of shards');
  assert.equal(kept(join(dir, 'd')), want);
  // A folder as `semdedup embed` writes it: embeddings/, ids/ and embeddings.yaml naming them.
  const emb = join(dir, 'emb');
  mkdirSync(emb);
  spawnSync('cp', ['-r', join(dir, 'shards'), join(emb, 'embeddings')]);
  spawnSync('cp', ['-r', join(dir, 'shard-ids'), join(emb, 'ids')]);
  writeFileSync(join(emb, 'embeddings.yaml'), 'embeddings: embeddings\nids: ids\n');
  ok(runCli(['run', 'emb', '-k', String(K), '-o', 'e', '--eps-list', '0.05', '-q'], dir), 'an embed folder');
  assert.equal(kept(join(dir, 'e')), want);
  // A Parquet file with an id column and a list column of floats (written by DuckDB).
  writeFileSync(join(dir, 'rows.jsonl'), IDS.map((id, i) => JSON.stringify({ id, embedding: Array.from(X.subarray(i * D, (i + 1) * D)) })).join('\n') + '\n');
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  await con.run(`COPY (SELECT id, CAST(embedding AS FLOAT[]) AS embedding FROM read_json('${join(dir, 'rows.jsonl')}')) TO '${join(dir, 'emb.parquet')}' (FORMAT parquet)`);
  con.closeSync();
  ok(runCli(['run', 'emb.parquet', '-k', String(K), '-o', 'f', '--eps-list', '0.05', '-q'], dir), 'a Parquet file');
  assert.equal(kept(join(dir, 'f')), want);
  // --threshold is the similarity: 0.95 is eps 0.05.
  ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'g', '--threshold', '0.95', '-q'], dir), '--threshold');
  assert.equal(kept(join(dir, 'g')), want);
  // An eps of 0.5 or more is almost surely a similarity: a warning says so.
  const high = ok(runCli(['run', 'emb.npy', '-k', String(K), '-o', 'h', '--eps-list', '0.9'], dir), '--eps-list 0.9');
  assert.match(high.stderr, /warning: eps 0\.9 .*similarity.*threshold/);
  assert.equal(high.stderr.match(/warning: eps 0\.9/g)?.length, 1, 'one warning');
  const both = runCli(['run', 'emb.npy', '-k', String(K), '-o', 'h', '--eps-list', '0.1', '--threshold', '0.9'], dir);
  assert.equal(both.code, 2);
});

test('after the run: the output folder as the argument (its recorded config used), extract prints where its ids went, --order input, the original\'s bytes on request', () => {
  const dir = dataFolder('front-after');
  const out = join(dir, 'out');
  ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'out', '--eps-list', '0.05,0.1', '-q'], dir), 'run');
  const curve = ok(runCli(['curve', 'out', '--from', '0.05', '--to', '0.05', '--json'], dir), 'curve out');
  const pts = (JSON.parse(curve.stdout) as { points: { eps: number; kept: number }[] }).points;
  const want = kept(out).split('\n').slice(0, -1);
  assert.equal(pts[0]!.kept, want.length);
  // extract without -o: the ids go to a file named by the eps, and the command says which.
  const x = ok(runCli(['extract', 'out/', '--eps', '0.03'], dir), 'extract --eps 0.03');
  const file = /^kept ids: (.*)$/m.exec(x.stdout)?.[1];
  assert.equal(file, join(out, 'extracted_kept_eps0.03.txt'));
  assert.ok(readFileSync(file!, 'utf8').endsWith('\n'));
  // --keep-fraction without -o: the file of the chosen eps.
  const f = ok(runCli(['extract', 'out', '--keep-fraction', '0.9'], dir), 'extract --keep-fraction');
  const chosen = /^eps ([0-9.e-]+) \(chosen/.exec(f.stdout)?.[1];
  assert.ok(chosen, f.stdout);
  assert.match(f.stdout, new RegExp(`kept ids: .*extracted_kept_eps${chosen!.replace('.', '\\.')}\\.txt`));
  // --order input: the same ids in the order of the input rows.
  ok(runCli(['extract', 'out', '--eps', '0.05', '--order', 'input', '-o', 'by-input.txt', '-q'], dir), '--order input');
  const byInput = readFileSync(join(dir, 'by-input.txt'), 'utf8').split('\n').slice(0, -1);
  const rowOf = (id: string) => Number(id.slice(4));
  assert.deepEqual(byInput, [...want].sort((a, b) => rowOf(a) - rowOf(b)));
  assert.notDeepEqual(byInput, want, 'the cluster order differs from the input order');
  ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'out2', '--eps-list', '0.05', '--order', 'input', '-q'], dir), 'run --order input');
  assert.equal(kept(join(dir, 'out2')), byInput.map((s) => `${s}\n`).join(''));
  // The original's bytes: ids joined by newlines, no final one.
  ok(runCli(['extract', 'out', '--eps', '0.05', '--kept-file-format', 'original', '-o', 'orig.txt', '-q'], dir), 'original bytes');
  assert.equal(readFileSync(join(dir, 'orig.txt'), 'utf8'), want.join('\n'));
});

test('-o: `-` is the standard output; a FIFO and a character device are written through, never replaced; a link is refused and left as it is; a regular file is replaced atomically', async () => {
  const dir = dataFolder('front-out');
  ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'out', '--eps-list', '0.05', '-q'], dir), 'run');
  const want = kept(join(dir, 'out'));
  // `-o -`: the ids on stdout, the summary on stderr.
  const s = ok(runCli(['extract', 'out', '--eps', '0.05', '-o', '-'], dir), 'extract -o -');
  assert.equal(s.stdout, want);
  assert.match(s.stderr, /kept ids: the standard output/);
  assert.ok(!existsSync(join(dir, '-')));
  // A FIFO: a reader gets the ids, the FIFO stays a FIFO.
  const fifo = join(dir, 'fifo');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const reader = spawn('cat', [fifo]);
  let got = '';
  reader.stdout.on('data', (b: Buffer) => (got += b.toString()));
  const closed = new Promise((r) => reader.on('close', r));
  const viaFifo = runCli(['extract', 'out', '--eps', '0.05', '-o', fifo, '-q'], dir);
  await closed;
  ok(viaFifo, 'extract -o fifo');
  assert.equal(got, want);
  assert.ok(lstatSync(fifo).isFIFO(), 'the FIFO is still a FIFO');
  // The explain table and the report through a FIFO too.
  for (const args of [['explain', 'out', '--eps', '0.05', '-o', fifo], ['report', 'out', '-o', fifo]]) {
    const r2 = spawn('cat', [fifo]);
    let n = 0;
    r2.stdout.on('data', (b: Buffer) => (n += b.length));
    const done = new Promise((r) => r2.on('close', r));
    const res = runCli([...args, '-q'], dir);
    await done;
    ok(res, args.join(' '));
    assert.ok(n > 0 && lstatSync(fifo).isFIFO(), `${args[0]}: written through the FIFO`);
  }
  // A character device (the null device, made here): written through, still a device.
  const dev = join(dir, 'null');
  const mk = spawnSync('mknod', [dev, 'c', '1', '3']);
  if (mk.status === 0) {
    ok(runCli(['extract', 'out', '--eps', '0.05', '-o', dev, '-q'], dir), 'extract -o device');
    assert.ok(lstatSync(dev).isCharacterDevice(), 'the device is still a device');
  } else {
    // Making a device needs root; the FIFO above is the same write-through path.
    assert.notEqual(process.getuid?.(), 0, `mknod failed as root: ${mk.stderr}`);
  }
  // A symbolic link (to a file, and one like /dev/stdout to the standard output): refused, untouched.
  const target = join(dir, 'precious.txt');
  writeFileSync(target, 'precious\n');
  const link = join(dir, 'link.txt');
  symlinkSync(target, link);
  for (const args of [['extract', 'out', '--eps', '0.05', '-o', link], ['explain', 'out', '--eps', '0.05', '-o', link], ['report', 'out', '-o', link],
    ['decontaminate', 'out', '--reference', 'emb.npy', '--eps', '0.01', '--matches', link, '-o', join(dir, 'k.txt')]]) {
    const r = runCli([...args, '-q'], dir);
    assert.notEqual(r.code, 0, `${args[0]}: a link refused`);
    assert.match(r.stderr, /is a symbolic link/);
    assert.ok(lstatSync(link).isSymbolicLink() && readlinkSync(link) === target, `${args[0]}: the link is left as it is`);
    assert.equal(readFileSync(target, 'utf8'), 'precious\n');
  }
  // A regular file: replaced by rename (a new inode; a hard link to the old one keeps the old bytes).
  const plain = join(dir, 'plain.txt');
  writeFileSync(plain, 'old\n');
  linkSync(plain, join(dir, 'hard.txt'));
  const ino = statSync(plain).ino;
  ok(runCli(['extract', 'out', '--eps', '0.05', '-o', plain, '-q'], dir), 'extract -o file');
  assert.equal(readFileSync(plain, 'utf8'), want);
  assert.notEqual(statSync(plain).ino, ino);
  assert.equal(readFileSync(join(dir, 'hard.txt'), 'utf8'), 'old\n');
  // A folder: refused with a clear error.
  const r = runCli(['extract', 'out', '--eps', '0.05', '-o', join(dir, 'shards')], dir);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /is a folder/);
});

test('usage errors are short and point at --help and --set; --json errors are JSON objects; a closed pipe ends quietly', () => {
  const dir = dataFolder('front-errors');
  for (const args of [['run', 'emb.npy', '--embedding', 'x'], ['curve', 'out', 'extra'], ['run', '--bogus']]) {
    const r = runCli(args, dir);
    assert.equal(r.code, 2, args.join(' '));
    const lines = r.stderr.trimEnd().split('\n');
    assert.ok(lines.length <= 3, `${args.join(' ')}: ${lines.length} lines:\n${r.stderr}`);
    assert.match(r.stderr, new RegExp(`semdedup ${args[0]} --help`));
    assert.match(r.stderr, /--set key=value/);
  }
  const bad = runCli(['run', 'emb.npy', '-k', '0', '-o', 'out', '--json'], dir);
  assert.equal(bad.code, 2);
  const e = JSON.parse(bad.stdout) as { error: { code: string; message: string; key: string; exitCode: number } };
  assert.equal(e.error.code, 'ERR_CONFIG');
  assert.equal(e.error.key, 'k');
  assert.equal(e.error.exitCode, 2);
  assert.match(e.error.message, /positive integer/);
  assert.ok(!existsSync(join(dir, 'out')), 'nothing created before validation');
  const usage = runCli(['run', '--bogus', '--json'], dir);
  assert.equal((JSON.parse(usage.stdout) as { error: { code: string } }).error.code, 'ERR_USAGE');
  const missing = runCli(['run', 'nothere.npy', '-k', '3', '-o', 'out', '--json'], dir);
  assert.equal(missing.code, 1);
  assert.equal((JSON.parse(missing.stdout) as { error: { code: string; file: string } }).error.code, 'ERR_INPUT');
  // The reader of the pipe is gone before the first write: no stack trace, exit 0.
  const pipe = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" info | true; echo "rc=\${PIPESTATUS[0]}" >&2`], { encoding: 'utf8' });
  assert.match(pipe.stderr, /rc=0/);
  assert.doesNotMatch(pipe.stderr, /EPIPE|Error|at /);
});

test('Ctrl-C: the step stops and the command exits 130', async () => {
  const dir = tmpFolder('front-sigint');
  // Data that keeps k-means busy for a while (many clusters, uniform noise).
  const n = 60000;
  const d = 64;
  const big = new SynthDataset({ n, dim: d, clusters: 1, seed: 3 });
  const rows = new Float32Array(n * d);
  big.fillRows(0, n, rows);
  writeNpy(join(dir, 'big.npy'), rows, { shape: [n, d] });
  const child = spawn(process.execPath, [CLI, 'run', 'big.npy', '-k', '600', '--niter', '500', '-o', 'out', '--device', 'cpu'], { cwd: dir });
  let err = '';
  let sent = false;
  child.stderr.on('data', (b: Buffer) => {
    err += b.toString();
    if (!sent && /cluster:train/.test(err)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
  assert.ok(sent, `no training progress seen:\n${err}`);
  assert.equal(code, 130, err);
  assert.match(err, /interrupted/);
});

test('progress: a bar on a terminal (stage, rate, elapsed, ETA; each stage at 100% once; log lines above it), plain lines without a terminal', () => {
  const dir = dataFolder('front-progress');
  const script = spawnSync('script', ['-q', '-e', '-c', `"${process.execPath}" "${CLI}" run emb.npy --ids ids.txt -k ${K} -o out --eps-list 0.05,0.1`, join(dir, 'tty.txt')], { cwd: dir, encoding: 'utf8', env: { ...process.env, COLUMNS: '160' } });
  assert.equal(script.status, 0, script.stderr);
  const raw = readFileSync(join(dir, 'tty.txt'), 'utf8');
  // What the terminal shows: the last state of each line (after the last carriage return or cursor reset).
  // eslint-disable-next-line no-control-regex
  const screen = raw.split('\n').map((l) => l.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '\r').split('\r').filter((s) => s.trim() !== '').pop() ?? '');
  const bars = screen.filter((l) => /\| ETA /.test(l));
  for (const stage of ['cluster:train', 'cluster:assign', 'dedup', 'extract']) {
    const done = bars.filter((l) => l.includes(stage) && /100% \|/.test(l));
    assert.equal(done.length, 1, `${stage} at 100% once:\n${screen.join('\n')}`);
    assert.match(done[0]!, /\| [\d,.]+\/[\d,.]+ (rows|iterations) \| .*\/s \| .* elapsed \| ETA /);
  }
  assert.match(raw, /[█░]/, 'a drawn bar');
  // Log lines start their own line: none shares one with a bar.
  for (const l of screen) if (l.includes('semdedup:')) assert.ok(!/\| ETA /.test(l), `a log line on a bar: ${l}`);
  // Without a terminal: lines, no carriage returns or escape sequences.
  const plain = ok(runCli(['run', 'emb.npy', '--ids', 'ids.txt', '-k', String(K), '-o', 'out2', '--eps-list', '0.05'], dir), 'plain');
  assert.doesNotMatch(plain.stderr, /\r|\x1b/);
  assert.match(plain.stderr, /cluster:train 100\.0% \(\d+\/\d+ iterations/);
  assert.equal(plain.stderr.match(/dedup 100\.0%/g)?.length, 1);
});
