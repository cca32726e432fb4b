// Property-based fuzzing (fast-check) of the parsers that read untrusted files: the .npy header
// and body reader, the ids readers and the config loader. Thousands of generated and mutated
// inputs; each must give a typed SemDedupError or a correct result (compared with numpy and
// PyYAML, Debian's python3-numpy and python3-yaml, as independent references), never a crash,
// a hang or a wrong result.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';

import { loadConfigFiles } from '../src/config.js';
import { SemDedupError } from '../src/errors.js';
import { checkUniqueIds, readIds, type Ids } from '../src/io/ids.js';
import { npyHeaderBytes, readNpy } from '../src/io/npy.js';
import { parseYamlLikePyYAML } from '../src/io/yaml11.js';
import { tmpFolder } from './helpers.js';
import { shellQuote, slurmOutput, stageScript } from '../src/plan/slurm.js';
import { planPaths, STAGES, type Plan, type Stage } from '../src/plan/plan.js';

const PY = '/usr/bin/python3';
const SEED = 20261129;

/** Runs a Python script over a JSON list on stdin; returns its JSON output. */
function python<T>(script: string, input: unknown): T {
  const r = spawnSync(PY, ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(r.status, 0, `python failed (Debian's python3-numpy and python3-yaml are needed): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

function typed(e: unknown, what: string): void {
  assert.ok(e instanceof SemDedupError, `${what}: not a typed error: ${(e as Error)?.stack ?? String(e)}`);
}

/** Byte mutations of a buffer: flips, overwrites, truncation, insertion, deletion. */
function mutated(base: Uint8Array): fc.Arbitrary<Buffer> {
  const edit = fc.oneof(
    fc.record({ op: fc.constant('set' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ op: fc.constant('cut' as const), at: fc.nat(), v: fc.constant(0) }),
    fc.record({ op: fc.constant('ins' as const), at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ op: fc.constant('del' as const), at: fc.nat(), v: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ op: fc.constant('text' as const), at: fc.nat(), v: fc.integer({ min: 0, max: TOKENS.length - 1 }) }),
  );
  return fc.array(edit, { minLength: 0, maxLength: 4 }).map((edits) => {
    let b = Buffer.from(base);
    for (const { op, at, v } of edits) {
      const i = b.length ? at % (b.length + (op === 'ins' ? 1 : 0)) : 0;
      if (op === 'set' && b.length) b[i] = v;
      else if (op === 'flip' && b.length) b[i]! ^= 1 << v;
      else if (op === 'cut') b = b.subarray(0, i);
      else if (op === 'ins') b = Buffer.concat([b.subarray(0, i), Buffer.from([v]), b.subarray(i)]);
      else if (op === 'del') b = Buffer.concat([b.subarray(0, i), b.subarray(i + v)]);
      else if (op === 'text') b = Buffer.concat([b.subarray(0, i), Buffer.from(TOKENS[v]!, 'latin1'), b.subarray(i)]);
    }
    return b;
  });
}

// Header tokens that make interesting mutations of a .npy header dict.
const TOKENS = ["'descr'", "'<f8'", "'>f4'", "'|b1'", "'<U3'", "'|S0'", 'True', 'False', '(', ')', ',', '-1', '99999999999999999999', '1e3', "'shape'", '{', '}', ':', '\n', ' ', '\\x00', "u'", 'None', '0x10', '(3,)', '((1,),)'];

// ---------------------------------------------------------------------------------------------
// .npy header and body

const NPY_DTYPES: [string, number][] = [['<f4', 4], ['<f8', 8], ['<i8', 8], ['<i4', 4], ['<u2', 2], ['|u1', 1], ['|b1', 1], ['<f2', 2], ['|S5', 5], ['<U3', 12], ['>f4', 4]];

const npyFile = fc
  .record({
    dt: fc.integer({ min: 0, max: NPY_DTYPES.length - 1 }),
    shape: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 0, maxLength: 3 }),
    seed: fc.integer(),
  })
  .chain(({ dt, shape, seed }) => {
    const [descr, item] = NPY_DTYPES[dt]!;
    const count = shape.reduce((a, b) => a * b, 1);
    const body = Buffer.alloc(count * item);
    let s = seed >>> 0 || 1;
    for (let i = 0; i < body.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      body[i] = descr === '|b1' ? (s >>> 16) & 1 : descr === '|S5' || descr === '<U3' ? (descr === '<U3' && i % 4 !== 0 ? 0 : 97 + ((s >>> 16) % 26)) : (s >>> 16) & 255;
    }
    const file = Buffer.concat([npyHeaderBytes(descr, shape), body]);
    return fc.tuple(fc.constant(file), mutated(file));
  });

test('fuzz: the .npy reader gives a typed error or exactly what numpy reads (3000 files)', { timeout: 600_000 }, () => {
  const dir = tmpFolder('fuzz-npy');
  const cases: { file: string; ours: string | null }[] = [];
  let ok = 0;
  let refused = 0;
  let i = 0;
  fc.assert(
    fc.property(npyFile, ([, bytes]) => {
      const file = path.join(dir, `f${i++}.npy`);
      writeFileSync(file, bytes);
      try {
        const { header, data } = readNpy(file);
        // Ours: the decoded values, in a form numpy's result can be compared with.
        const h = createHash('sha256');
        if (Array.isArray(data)) h.update(JSON.stringify(data));
        else h.update(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        cases.push({ file, ours: `${header.descr}|${header.shape.join(',')}|${h.digest('hex')}` });
        ok++;
      } catch (e) {
        typed(e, `readNpy of a mutated file ${file}`);
        cases.push({ file, ours: null });
        refused++;
      }
    }),
    { numRuns: 3000, seed: SEED },
  );
  // numpy's reading of every file where ours gave a result (and of the refused ones, for the tally).
  const numpy = python<(string | null)[]>(
    `
import sys, json, hashlib, numpy as np
out = []
for f in json.load(sys.stdin):
    try:
        a = np.load(f, allow_pickle=False)
        if a.dtype.kind == 'S': payload = json.dumps([x.decode('utf-8') for x in a.ravel().tolist()], ensure_ascii=False, separators=(',', ':')).encode('utf-8')
        elif a.dtype.kind == 'U': payload = json.dumps(a.ravel().tolist(), ensure_ascii=False, separators=(',', ':')).encode('utf-8')
        else: payload = np.ascontiguousarray(a).tobytes()
        out.append(a.dtype.str + '|' + ','.join(str(d) for d in a.shape) + '|' + hashlib.sha256(payload).hexdigest())
    except Exception as e:
        out.append(None)
print(json.dumps(out))
`,
    cases.map((c) => c.file),
  );
  let numpyAlsoRefused = 0;
  cases.forEach((c, k) => {
    if (c.ours !== null) {
      const [descr, shape, hash] = c.ours.split('|');
      const [nd, ns, nh] = (numpy[k] ?? '||').split('|');
      assert.ok(numpy[k] !== null, `${c.file}: ours read it (${c.ours}) but numpy refuses it`);
      assert.equal(ns, shape, `${c.file}: shape`);
      assert.equal(nd!.replace('|', ''), descr!.replace('|', ''), `${c.file}: dtype`);
      assert.equal(nh, hash, `${c.file}: values differ from numpy's`);
    } else if (numpy[k] === null) numpyAlsoRefused++;
  });
  process.stdout.write(`# fuzz npy: 3000 files, ${ok} read (all equal to numpy), ${refused} refused with a typed error (${numpyAlsoRefused} of them refused by numpy too)\n`);
});

// ---------------------------------------------------------------------------------------------
// Ids readers

const idsInput = fc.oneof(
  // A raw S8 memmap: random bytes (mostly printable) of a random number of items.
  fc.record({
    kind: fc.constant('memmap' as const),
    bytes: fc.array(fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constantFrom(0, 0x0a, 0x0d, 0xc3, 0xa9, 0xff, 0xe2, 0x82)), { minLength: 0, maxLength: 8 * 12 }),
  }),
  // A text file: random lines.
  fc.record({
    kind: fc.constant('text' as const),
    bytes: fc.array(fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.constantFrom(0, 0x0a, 0x0d, 0xc3, 0xa9, 0xff, 0xef, 0xbb, 0xbf)), { minLength: 0, maxLength: 80 }),
  }),
);

test('fuzz: the ids readers give a typed error or exactly the ids Python decodes (3000 files)', { timeout: 600_000 }, () => {
  const dir = tmpFolder('fuzz-ids');
  mkdirSync(dir, { recursive: true });
  const cases: { file: string; kind: 'memmap' | 'text'; ours: string[] | null }[] = [];
  let i = 0;
  fc.assert(
    fc.property(idsInput, ({ kind, bytes }) => {
      const file = path.join(dir, `ids${i++}.${kind === 'text' ? 'txt' : 'bin'}`);
      const buf = Buffer.from(kind === 'memmap' ? bytes.slice(0, bytes.length - (bytes.length % 8)) : bytes);
      writeFileSync(file, buf);
      let ids: Ids | undefined;
      try {
        ids = readIds(file, kind === 'memmap' ? { format: 'memmap', dtype: 'S8' } : { format: 'text' });
        checkUniqueIds(ids, file);
        cases.push({ file, kind, ours: ids.toArray() });
      } catch (e) {
        typed(e, `ids ${file}`);
        cases.push({ file, kind, ours: null });
      }
    }),
    { numRuns: 3000, seed: SEED },
  );
  // Python: the memmap as numpy gives it (bytes scalars, trailing NULs stripped) decoded as UTF-8;
  // the text file split into lines. An id must be non-empty, unique and hold no \n, \r or NUL.
  const ref = python<(string[] | null)[]>(
    `
import sys, json, numpy as np
out = []
for f, kind in json.load(sys.stdin):
    try:
        if kind == 'memmap':
            raw = open(f, 'rb').read()
            ids = [x.decode('utf-8') for x in np.frombuffer(raw, dtype='S8').tolist()] if raw else []
        else:
            text = open(f, 'rb').read().decode('utf-8')
            if text.startswith('\\ufeff'): text = text[1:]
            ids = text.split('\\n')
            if ids and ids[-1] == '': ids.pop()
            ids = [x[:-1] if x.endswith('\\r') else x for x in ids]
        bad = any(x == '' or '\\n' in x or '\\r' in x or '\\0' in x for x in ids) or len(set(ids)) != len(ids)
        out.append(None if bad else ids)
    except Exception:
        out.append(None)
print(json.dumps(out))
`,
    cases.map((c) => [c.file, c.kind]),
  );
  let read = 0;
  cases.forEach((c, k) => {
    assert.deepEqual(c.ours, ref[k], `${c.file} (${c.kind}): ours ${JSON.stringify(c.ours)} vs Python ${JSON.stringify(ref[k])}`);
    if (c.ours) read++;
  });
  process.stdout.write(`# fuzz ids: 3000 files, ${read} read (equal to Python's), ${3000 - read} refused with a typed error (as the Python reference)\n`);
});

// ---------------------------------------------------------------------------------------------
// Config loader

const KEYS = ['save_folder', 'ncentroids', 'seed', 'niter', 'Kmeans_with_cos_dist', 'sim_metric', 'eps_list', 'path_str_dtype', 'which_to_keep', 'emb_size', 'unknown_key'];
const SCALARS = [
  '.', 'e0', 'E3', '.e1', '+.', '._1', '1e3', '1.0e+3', '010', '09', '0x1f', '0b11', '1_000', '1:30', '1:30.5', '.inf', '-.inf', '.nan', 'yes', 'No', 'on', 'y', '~', 'null',
  '', '2001-12-14', '-1', '+7', '0', '20', '0.05', '[0.01, 0.05]', '"0.01,0.05"', "'S24'", 'S24', 'cosine', 'hard', 'True', 'out', '"out dir"', '{a: 1}', '!!int 3', '!!str 3',
  '! 010', "'it''s'", '"a\\tb"', '/data/x.npy', 'a b', 'é', '#c', '12345678901234567890',
];
// Fragments that break the syntax or the characters.
const BROKEN = ['[', ']', '"', "'", '&a x', '*a', '!!float x', '- 1', '|', '>', '? x', '\t', '\u0085', '\u0007', '{', ': :'];

const yamlDoc = fc
  .array(
    fc.tuple(
      fc.constantFrom(...KEYS),
      fc.oneof({ arbitrary: fc.constantFrom(...SCALARS), weight: 6 }, { arbitrary: fc.constantFrom(...BROKEN), weight: 1 }),
      fc.constantFrom(': ', ':  ', ' : ', ':'),
    ),
    { minLength: 0, maxLength: 6 },
  )
  .map((lines) => lines.map(([k, v, sep]) => `${k}${sep}${v}`).join('\n') + '\n');

test('fuzz: the config loader gives a typed error or, for every document PyYAML reads, the values PyYAML reads (3000 documents, a quarter byte-mutated)', { timeout: 600_000 }, () => {
  const dir = tmpFolder('fuzz-yaml');
  const docs: Buffer[] = [];
  fc.assert(
    fc.property(yamlDoc, fc.integer({ min: 0, max: 3 }), fc.nat(), (doc, mutate, m) => {
      let b = Buffer.from(doc, 'utf8');
      if (mutate === 0 && b.length) {
        b = Buffer.from(b);
        b[m % b.length] = (m >>> 8) & 255; // one byte replaced: may break UTF-8 or the syntax
      }
      docs.push(b);
      const file = path.join(dir, 'clustering_configs.yaml');
      writeFileSync(file, b);
      try {
        loadConfigFiles([file], undefined, { cwd: dir });
      } catch (e) {
        typed(e, `config ${JSON.stringify(b.toString('latin1'))}`);
      }
    }),
    { numRuns: 3000, seed: SEED },
  );
  // The parse itself equals PyYAML's (safe_load on the same bytes), or both refuse.
  const ref = python<({ ok: unknown } | { err: string })[]>(
    `
import sys, json, yaml, math, datetime, base64
def enc(v):
    if isinstance(v, bool): return ['bool', v]
    if isinstance(v, int): return ['num', str(v)]
    if isinstance(v, float): return ['num', 'nan' if math.isnan(v) else repr(v)]
    if isinstance(v, datetime.date): return ['date', v.isoformat()]
    if v is None: return None
    if isinstance(v, str): return ['str', v]
    if isinstance(v, list): return ['list', [enc(x) for x in v]]
    if isinstance(v, dict): return ['map', sorted([[json.dumps(enc(k)), enc(x)] for k, x in v.items()])]
    return ['other', repr(v)]
out = []
for d in json.load(sys.stdin):
    try: out.append({'ok': enc(yaml.safe_load(base64.b64decode(d)))})
    except Exception as e: out.append({'err': type(e).__name__})
print(json.dumps(out))
`,
    docs.map((b) => b.toString('base64')),
  );
  const enc = (v: unknown): unknown => {
    if (typeof v === 'boolean') return ['bool', v];
    if (typeof v === 'bigint') return ['num', String(v)];
    if (typeof v === 'number') return ['num', v];
    if (v instanceof Date) return ['date', v.toISOString()];
    if (v === null) return null;
    if (typeof v === 'string') return ['str', v];
    if (Array.isArray(v)) return ['list', v.map(enc)];
    if (typeof v === 'object') return ['map', Object.entries(v as object).map(([k, x]) => [k, enc(x)])];
    return ['other', String(v)];
  };
  const same = (a: unknown, b: unknown): boolean => {
    if (a === null || b === null) return a === b;
    const [ta, va] = a as [string, unknown];
    const [tb, vb] = b as [string, unknown];
    if (ta !== tb) return false;
    if (ta === 'num') {
      const s = String(vb);
      if (typeof va === 'string') return va === s; // bigint
      if (s === 'nan') return Number.isNaN(va);
      if (s === 'inf' || s === '-inf') return va === (s === 'inf' ? Infinity : -Infinity);
      return Object.is(va, Number(s));
    }
    if (ta === 'date') return String(va).slice(0, 10) === String(vb).slice(0, 10);
    if (ta === 'list') return (va as unknown[]).length === (vb as unknown[]).length && (va as unknown[]).every((x, i) => same(x, (vb as unknown[])[i]));
    if (ta === 'map') {
      const pa = (va as [string, unknown][]).slice().sort(([x], [y]) => (x < y ? -1 : 1));
      // PyYAML's keys are typed; the engine's mapping keys are their string forms.
      const keyText = (k: [string, unknown] | null): string => (k === null ? '' : k[0] === 'num' ? String(Number(k[1])) : String(k[1]));
      const pb = (vb as [string, unknown][]).map(([k, x]) => [keyText(JSON.parse(k) as [string, unknown] | null), x] as [string, unknown]).sort(([x], [y]) => (x < y ? -1 : 1));
      return pa.length === pb.length && pa.every(([k, x], i) => k === pb[i]![0] && same(x, pb[i]![1]));
    }
    return va === vb;
  };
  let parsed = 0;
  let bothRefused = 0;
  let dupRefused = 0;
  let pyOnlyRefused = 0;
  const stricter: string[] = [];
  docs.forEach((b, k) => {
    let got: unknown;
    let err: Error | undefined;
    try {
      got = parseYamlLikePyYAML(b);
    } catch (e) {
      err = e as Error;
    }
    const want = ref[k]!;
    const doc = JSON.stringify(b.toString('latin1'));
    if ('err' in want) {
      // Not a file the original can read: the engine may refuse it or read it (its structure
      // parser is more lenient, e.g. with a tab after a value indicator); it never crashes.
      if (err) bothRefused++;
      else pyOnlyRefused++;
    } else if (err) {
      // Refusals on purpose: a key given twice in a mapping (PyYAML keeps the last), the YAML 1.1
      // line breaks NEL, LS, PS. Other refusals of what PyYAML reads: layouts PyYAML tolerates
      // and YAML 1.2 does not (e.g. a quoted scalar continued at column 0); typed, and counted.
      typed(new SemDedupError('ERR_CONFIG', err.message), doc);
      if (/unique|YAML 1\.1 line break/i.test(err.message)) dupRefused++;
      else stricter.push(`${doc}: ${err.message}`);
    } else {
      assert.ok(same(enc(got), want.ok), `${doc}: engine ${JSON.stringify(enc(got), (_k, v) => (typeof v === 'bigint' ? String(v) : v))} vs PyYAML ${JSON.stringify(want.ok)}`);
      parsed++;
    }
  });
  // Layout leniencies of PyYAML stay rare in this corpus of one-line keys (they are not values read differently).
  assert.ok(stricter.length <= 30, `${stricter.length} documents PyYAML reads are refused:\n${stricter.slice(0, 20).join('\n')}`);
  process.stdout.write(`# fuzz config: 3000 documents: ${parsed} parsed as PyYAML parses them, ${bothRefused} refused by both, ${pyOnlyRefused} refused by PyYAML only (read by the engine), ${dupRefused} refused on purpose (a repeated key, which PyYAML takes the last of, or a NEL/LS/PS line break), ${stricter.length} refused for a layout PyYAML tolerates\n`);
});

// ---------------------------------------------------------------------------------------------
// The SLURM stage script: every path in it is a shell word that expands to exactly the path

// Pieces of hostile folder names: command substitutions, quotes, expansions, separators, newlines,
// globs, bytes above ASCII (written as UTF-8), and a lone surrogate (not writable as it is: refused).
const PATH_PIECES = ['$(touch PWNED)', '`touch PWNED`', "'", '"', ' ', '\n', '\t', '\\', '%', '%a', '%%', ';touch PWNED;', '$HOME', '${IFS}', '*', '?', '[a]', '!', '&', '|', '>', '<', '#', '~', '{a,b}', '\x80\xff', 'é', '\u2028', '😀', 'x', '-', '\r', '\ud800'];

test('fuzz: the SLURM stage script, run by bash, hands the task exactly the plan and log paths and runs nothing else (400 hostile folder names)', { timeout: 600_000 }, () => {
  const root = tmpFolder('fuzz-slurm');
  // The "CLI" the script executes: records its arguments.
  const argvJs = path.join(root, 'argv.cjs');
  writeFileSync(argvJs, "require('fs').writeFileSync(process.env.ARGV_OUT, JSON.stringify(process.argv.slice(2)));\n");
  let n = 0;
  try {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: PATH_PIECES.length - 1 }), { minLength: 1, maxLength: 6 }), fc.integer({ min: 0, max: STAGES.length - 1 }), (pieces, si) => {
        const name = pieces.map((i) => PATH_PIECES[i]!).join('');
        const sandbox = path.join(root, `case${n++}`);
        const outputDir = path.join(sandbox, name);
        const plan = { id: '0123456789abcdef', outputDir } as Plan;
        const planPath = planPaths.plan(outputDir);
        const stage = STAGES[si]!;
        let script: string;
        try {
          script = stageScript(plan, planPath, stage, { node: process.execPath, cli: argvJs });
        } catch (e) {
          typed(e, name);
          assert.ok(/[\ud800-\udfff]/.test(name), `refused a well-formed path: ${JSON.stringify(name)}`);
          return;
        }
        assert.ok(!/[\ud800-\udfff]/.test(name.replace(/[\ud800-\udbff][\udc00-\udfff]/g, '')), 'a lone surrogate is refused');
        mkdirSync(planPaths.logs(outputDir), { recursive: true });
        const file = path.join(sandbox, 'stage.sbatch');
        writeFileSync(file, script);
        const syntax = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
        assert.equal(syntax.status, 0, `bash -n: ${syntax.stderr}\n${script}`);
        const argvOut = path.join(root, `argv${n}.json`);
        const r = spawnSync('bash', [file], { cwd: sandbox, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: sandbox, SLURM_ARRAY_TASK_ID: '3', ARGV_OUT: argvOut } });
        assert.equal(r.status, 0, `the script failed: ${r.stderr}\n${script}`);
        const log = path.join(planPaths.logs(outputDir), `${stage}.3.log`);
        assert.deepEqual(JSON.parse(readFileSync(argvOut, 'utf8')), ['task', stage, '3', '--plan', planPath, '--log', log]);
        assert.ok(existsSync(log), 'the log file is at the exact path');
        // Nothing else was created: only the output folder's own tree and the script.
        const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
        assert.deepEqual(walk(sandbox).sort(), [file, log].sort(), `files created: ${walk(sandbox).join(', ')}`);
        // SLURM's --output: %% and %a expanded as SLURM does give the same log file (or no file
        // where the path holds a backslash, which SLURM cannot write to).
        const out = slurmOutput(planPaths.logs(outputDir), stage);
        if (outputDir.includes('\\')) assert.equal(out, '/dev/null');
        else assert.equal(out.replace(/%(.)/g, (_m, c: string) => (c === '%' ? '%' : c === 'a' ? '3' : `%${c}`)), log);
        rmSync(sandbox, { recursive: true, force: true });
        rmSync(argvOut, { force: true });
      }),
      { numRuns: 400, seed: SEED },
    );
    // The quoting itself, against bash's own reading of the word (printf %s).
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: PATH_PIECES.length - 2 }), { maxLength: 8 }), fc.string({ maxLength: 8 }), (pieces, extra) => {
        const s = pieces.map((i) => PATH_PIECES[i]!).join('') + extra.replace(/\0/g, '');
        let q: string;
        try {
          q = shellQuote(s);
        } catch (e) {
          typed(e, s);
          return;
        }
        const r = spawnSync('bash', ['-c', `printf %s ${q}`], { cwd: root, encoding: 'buffer' });
        assert.equal(r.status, 0, r.stderr.toString());
        assert.ok(r.stdout.equals(Buffer.from(s, 'utf8')), `${JSON.stringify(s)} -> ${q} -> ${JSON.stringify(r.stdout.toString())}`);
      }),
      { numRuns: 600, seed: SEED },
    );
    assert.deepEqual(readdirSync(root).filter((f) => f.startsWith('PWNED')), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Every command's arguments: hostile values for every option and argument

// Values an option or argument gets: numbers out of range, not numbers, shell syntax, quotes,
// newlines, angle brackets, relative paths inside the sandbox (never absolute, never ..).
const ARG_VALUES = ['', '0', '1', '-1', '1.5', '-3', '0.05', '2', '1e3', '1e999', 'NaN', 'Infinity', 'abc', '99999999', '0x10', ' 7 ',
  '$(touch PWNED)', '`touch PWNED`', "it's", 'a"b', 'x\ny', '<b>x</b>', '=SUM(A1)', 'out', 'out2', 'x.npy', 'c.yaml', 'ids.txt', 'a b/c', 'empty.npy',
  'out/semdedup/M.npy', 'out/semdedup/plan.json', 'out/kmeans_centroids.npy', 'r.csv', 'r.jsonl', 'r.html', 'train', 'dedup', 'k=3', 'eps_list=[0.1]',
  'output_dir=o$(touch PWNED)', 'threads=-1', 'nitre=5', 'é😀'];

/** Every command of the CLI with its options (long flags, whether each takes a value, its choices). */
function commandsOf(program: { commands: readonly { name(): string; options: readonly { long?: string; required: boolean; optional: boolean; argChoices?: string[] }[]; registeredArguments: readonly unknown[] }[] }) {
  return program.commands.map((c) => ({
    name: c.name(),
    flags: c.options.map((o) => ({ flag: o.long!, value: o.required || o.optional, choices: o.argChoices })),
    args: c.registeredArguments.length,
  }));
}

test('SLURM stage script: a plan id or a stage that the engine did not write (a forged plan.json) is refused, never written into the script', () => {
  const outputDir = tmpFolder('slurm-forged');
  const planPath = planPaths.plan(outputDir);
  for (const id of ['x\ntouch PWNED', '$(touch PWNED)', '', '0123456789ABCDEF'])
    assert.throws(() => stageScript({ id, outputDir } as Plan, planPath, 'train'), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG', JSON.stringify(id));
  assert.throws(() => stageScript({ id: '0123456789abcdef', outputDir } as Plan, planPath, 'train\ntouch PWNED' as Stage), (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CONFIG');
  assert.match(stageScript({ id: '0123456789abcdef', outputDir } as Plan, planPath, 'train'), /plan 0123456789abcdef/);
});

test('fuzz: every command\'s arguments: a typed error or a result, never an internal error, a crash or a command run from a value (60 command lines per command)', { timeout: 600_000 }, async () => {
  const { buildProgram } = await import('../src/cli.js');
  const commands = commandsOf(buildProgram() as never).filter((c) => c.name !== 'info' && c.name !== 'help');
  const sandbox = tmpFolder('fuzz-cli');
  try {
    // A small finished run, its config and ids, for the commands to work on.
    const n = 300;
    const x = new Float32Array(n * 8);
    for (let i = 0; i < n; i++) {
      x[i * 8 + (i % 8)] = 0.8;
      x[i * 8 + ((i + 1) % 8)] = 0.6;
    }
    writeFileSync(path.join(sandbox, 'x.npy'), Buffer.concat([npyHeaderBytes('<f4', [n, 8]), Buffer.from(x.buffer)]));
    writeFileSync(path.join(sandbox, 'ids.txt'), Array.from({ length: n }, (_, i) => `=id_${i}`).join('\n') + '\n');
    writeFileSync(path.join(sandbox, 'empty.npy'), '');
    writeFileSync(path.join(sandbox, 'c.yaml'), 'embeddings: x.npy\nids: ids.txt\nids_format: text\nk: 3\nspherical: true\neps_list: [0.05]\noutput_dir: out\n');
    const first = spawnSync(process.execPath, [path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'cli.js'), 'run', '-c', 'c.yaml', '-q'], { cwd: sandbox, encoding: 'utf8' });
    assert.equal(first.status, 0, first.stderr);
    const protectedFiles = ['x.npy', 'ids.txt', 'c.yaml', 'out/semdedup/M.npy', 'out/kmeans_centroids.npy'].map((f) => [f, createHash('sha256').update(readFileSync(path.join(sandbox, f))).digest('hex')] as const);

    const value = fc.integer({ min: 0, max: ARG_VALUES.length - 1 }).map((i) => ARG_VALUES[i]!);
    const cases: string[][] = [];
    for (const cmd of commands) {
      // Mostly known options with one hostile value among sensible ones, so that the commands get
      // past the usage checks to the values; sometimes an extra argument or an unknown option.
      const option = fc.oneof(
        { weight: 12, arbitrary: fc.tuple(fc.integer({ min: 0, max: Math.max(0, cmd.flags.length - 1) }), value, fc.nat()) },
        { weight: 1, arbitrary: fc.tuple(fc.constant(-1), value, fc.nat()) },
      );
      const line = fc.tuple(
        fc.array(value, { minLength: cmd.args, maxLength: cmd.args }),
        fc.array(option, { maxLength: 3 }),
        fc.integer({ min: 0, max: 9 }),
      ).map(([args, opts, dice]) => {
        const argv = [cmd.name, ...args, ...(dice === 0 ? ['extra'] : [])];
        for (const [i, v, pick] of opts) {
          const f = cmd.flags[i];
          if (!f || i < 0) argv.push(`--no-such-${v.length}`);
          else if (f.choices) argv.push(f.flag, pick % 5 === 0 ? v : f.choices.filter((c) => c !== 'slurm')[pick % f.choices.filter((c) => c !== 'slurm').length]!);
          else argv.push(...(f.value ? [f.flag, v] : [f.flag]));
        }
        if (dice < 9 && cmd.flags.some((f) => f.flag === '--config')) argv.push('-c', 'c.yaml');
        // The steps' own parameters (-k, --niter, --seed, ...) legitimately remake a run's files: the
        // steps write to a folder of their own (the last -o wins), so that the run in out/ that the
        // commands after the run read stays the one whose files are checked unchanged below.
        if (cmd.flags.some((f) => f.flag === '--output-dir')) argv.push('-o', 'steps-out');
        return argv;
      });
      cases.push(...fc.sample(line, { numRuns: 60, seed: SEED + cases.length }));
    }
    // No job goes to a real scheduler from here (the SLURM script has its own target above).
    for (const c of cases) assert.ok(!c.includes('slurm'));
    const driver = path.join(path.dirname(new URL(import.meta.url).pathname), 'cli-fuzz-driver.js');
    const r = spawnSync(process.execPath, [driver], { cwd: sandbox, input: JSON.stringify({ cases }), encoding: 'utf8', maxBuffer: 1 << 28, timeout: 540_000 });
    assert.equal(r.status, 0, `the driver failed: ${r.stderr}`);
    const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { code: number; out: string });
    assert.equal(results.length, cases.length, 'every command line answered');
    results.forEach((res, i) => {
      const what = JSON.stringify(cases[i]);
      assert.ok([0, 1, 2].includes(res.code), `${what}: exit ${res.code}\n${res.out}`);
      assert.ok(!/internal error/.test(res.out), `${what}: ${res.out}`);
    });
    const all = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? all(path.join(d, e.name)) : [path.join(d, e.name)]));
    assert.deepEqual(all(sandbox).filter((f) => /PWNED/.test(path.basename(f))), [], 'nothing of a value was run');
    for (const [f, h] of protectedFiles) assert.equal(createHash('sha256').update(readFileSync(path.join(sandbox, f))).digest('hex'), h, `${f} unchanged`);
    const codes = new Map<number, number>();
    if (process.env.SEMDEDUP_FUZZ_DEBUG) for (const [i, res] of results.entries()) process.stderr.write(`${res.code} ${JSON.stringify(cases[i])} ${res.out.split("\n")[0]}\n`);
    for (const res of results) codes.set(res.code, (codes.get(res.code) ?? 0) + 1);
    assert.ok((codes.get(0) ?? 0) > 0 && (codes.get(2) ?? 0) > 0, `both results and refusals: ${JSON.stringify([...codes])}`);
  } finally {
    rmSync(sandbox, { recursive: true, force: true });
  }
});
