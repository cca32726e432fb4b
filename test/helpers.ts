// What several test files share: the repository root, the CLI, temporary folders.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EmbeddingsSpec } from '../src/embeddings.js';
import { prepareEmbeddings, type NormalizeMode } from '../src/steps/check.js';
import type { CommonOptions } from '../src/steps/common.js';

/** The repository root: the first folder above this file holding configs/example.yaml, else cwd. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'configs', 'example.yaml'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export const ROOT = repoRoot();
export const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
export const TOOLS_CLI = path.join(ROOT, 'dist', 'tools', 'cli.js');

/** A new temporary folder whose name starts with `semdedup-${tag}-`. */
export function tmpFolder(tag: string): string {
  return mkdtempSync(path.join(tmpdir(), `semdedup-${tag}-`));
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `semdedup ARGS` in `cwd`. */
export function runCli(args: string[], cwd: string, timeout = 120_000, entry = CLI): CliResult {
  const r = spawnSync(process.execPath, [entry, ...args], { cwd, encoding: 'utf8', timeout });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs a step of the API from an embeddings spec, as the pipeline does: the embeddings opened and
 * checked once (prepareEmbeddings, with the options' normalize mode), the step, then the handle closed.
 */
export async function withSpec<O extends { outputDir: string }, R>(
  step: (o: O) => Promise<R>,
  o: Omit<O, 'embeddings'> & { embeddings?: EmbeddingsSpec; normalize?: NormalizeMode },
): Promise<R> {
  const { embeddings: spec, normalize, ...rest } = o as typeof o & CommonOptions;
  if (!spec) return step(rest as unknown as O);
  const emb = await prepareEmbeddings(spec, { ...(rest as CommonOptions), outputDir: o.outputDir, normalize: normalize ?? 'auto' });
  try {
    return await step({ ...rest, embeddings: emb } as unknown as O);
  } finally {
    emb.close();
  }
}

/**
 * The Python that has `modules` (the reference implementations): SEMDEDUP_PYTHON when set, else
 * the first of the system's /usr/bin/python3 (where scripts/setup.sh installs the distribution's
 * numpy, faiss, torch and pandas, whose versions the references were checked with) and `python3`
 * on the PATH that imports them. When none does, the tests that need it fail (never skip).
 */
export function referencePython(modules: string[]): string {
  const cands = process.env.SEMDEDUP_PYTHON ? [process.env.SEMDEDUP_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const c of cands) {
    const r = spawnSync(c, ['-c', `import ${modules.join(', ')}`], { stdio: 'pipe' });
    if (r.status === 0) return c;
  }
  return cands[0]!;
}

/** Every file under `dir`, relative, sorted. */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32): test data that is the same on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
