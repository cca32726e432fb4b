// The error codes come from one list, native/core/semdedup/errors.def, which the C++ engine
// (semdedup::ErrorCode), the addon and src/errors.ts all follow: this test reads the list and
// fails when the TypeScript side differs from it, and checks that the addon throws the
// registered SemDedupError class with the code and reason of the list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { ERROR_CODES, NATIVE_REASONS, SemDedupError } from '../src/errors.js';
import { loadNative } from '../src/native/index.js';
import { ROOT } from './helpers.js';

function readList(): { publics: [string, string, string][]; causes: [string, string, string][] } {
  const text = readFileSync(path.join(ROOT, 'native', 'core', 'semdedup', 'errors.def'), 'utf8');
  const publics: [string, string, string][] = [];
  const causes: [string, string, string][] = [];
  for (const line of text.split('\n')) {
    const read = publics.length + causes.length;
    let m = /^SEMDEDUP_PUBLIC\((\w+), "(ERR_[A-Z_]+)", "([^"]*)"\)$/.exec(line.trim());
    if (m) publics.push([m[1]!, m[2]!, m[3]!]);
    m = /^SEMDEDUP_CAUSE\((\w+), "([a-z-]+)", (\w+)\)$/.exec(line.trim());
    if (m) causes.push([m[1]!, m[2]!, m[3]!]);
    // Every entry is on one line in the form above (so that this reader sees all of them).
    if (/^SEMDEDUP_(PUBLIC|CAUSE)\(/.test(line.trim()) && publics.length + causes.length === read) assert.fail(`errors.def: an entry this test cannot read: ${line}`);
  }
  return { publics, causes };
}

test('errors: the TypeScript codes are the list of errors.def, in its order, with its meanings', () => {
  const { publics } = readList();
  assert.ok(publics.length >= 7, 'the list is read');
  assert.deepEqual(Object.keys(ERROR_CODES), publics.map((p) => p[1]), 'the same codes in the same order');
  for (const [, code, meaning] of publics) assert.equal(ERROR_CODES[code as keyof typeof ERROR_CODES], meaning, `${code}: the same meaning`);
  assert.ok('ERR_TASK' in ERROR_CODES, 'a failed planned task has its own code (not ERR_BACKEND)');
});

test("errors: the engine's kinds of failure and the public code each reaches JavaScript as are the list's", () => {
  const { publics, causes } = readList();
  assert.ok(causes.length >= 7, 'the list is read');
  const codeOf = new Map(publics.map((p) => [p[0], p[1]]));
  const want = Object.fromEntries(causes.map(([, reason, pub]) => [reason, codeOf.get(pub)]));
  assert.deepEqual(NATIVE_REASONS, want);
  for (const [name, , pub] of causes) assert.ok(codeOf.has(pub), `${name}: maps to a public code of the list (${pub})`);
});

test('errors: the addon throws the registered SemDedupError class with the code and reason of the list', async () => {
  const addon = loadNative();
  // A bad argument (sync) and a failed job (async): both instances of the class, none a plain Error.
  assert.throws(
    () => addon.maxSimLayout({ n: -1, d: 4 }),
    (e: unknown) => e instanceof SemDedupError && e.code === NATIVE_REASONS['invalid-argument'] && e.reason === 'invalid-argument' && /maxSimLayout: n and d/.test(e.message),
  );
  await assert.rejects(
    addon.writeIdsText({ fd: -1, ids: { kind: 'rows', count: 3 }, rows: BigInt64Array.from([0n, 1n, 2n]) }),
    (e: unknown) => e instanceof SemDedupError && e.reason === 'io' && e.code === NATIVE_REASONS.io,
  );
  const token = new addon.CancelToken();
  token.cancel();
  await assert.rejects(
    addon.splitKept({ keepOrder: BigInt64Array.from([0n]), M: Float64Array.from([0.5]), thresholds: [0.9], cancel: token }),
    (e: unknown) => e instanceof SemDedupError && e.code === 'ERR_CANCELLED' && e.reason === 'cancelled',
  );
});
