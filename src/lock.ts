// One run per output folder: an exclusive lock (flock) on `semdedup/lock` in the output folder,
// held while a command works on it and released by the kernel when the process ends, however it
// ends (no stale lock after a crash or a kill). A second run on the folder refuses at once,
// naming the process that holds it. Taking the lock also removes the temporary files that dead
// writers left in the folder.
//
// A planned run is one run made of several processes: its executor and each of its tasks hold the
// same lock shared (so a single run, which needs it exclusive, refuses while any of them works, and
// they refuse while a single run works), and the executor also holds `semdedup/plan.lock`
// exclusive, so that two planned runs never share a folder.
//
// Inside one process the kernel's lock does not tell two callers apart, so the process keeps its
// own count: a command that runs others (run: cluster, sort, ...) shares its lock with them (the
// nested calls run in its async context), while a second, independent call on the same folder
// (`Promise.all([runAll(cfg), runAll(cfg)])`) refuses at once, as a second process would.
import { AsyncLocalStorage } from 'node:async_hooks';
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { OutputError } from './errors.js';
import { makeDir, refuseLinks, removeStaleTemps } from './io/atomic.js';
import { outputs } from './layout.js';
import { loadNative } from './native/index.js';

interface Held {
  fd: number;
  count: number;
  shared: boolean;
}

/** The lock files that the current async context holds (through withLock). */
const context = new AsyncLocalStorage<ReadonlySet<string>>();

// Locks this process holds, by folder: a command that runs others (run: cluster, sort, ...) takes
// the lock once and the nested commands share it.
const held = new Map<string, Held>();

export function lockPath(outputDir: string): string {
  return outputs.lock(outputDir);
}

function holderOf(file: string): string {
  // The holder writes its pid right after taking the lock; give it a moment.
  for (let i = 0; i < 20; i++) {
    try {
      const s = readFileSync(file, 'utf8').trim();
      if (/^\d+$/.test(s)) return s;
    } catch {
      // read again
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  }
  return 'unknown';
}

export interface DirLock {
  readonly outputDir: string;
  release(): void;
}

/**
 * Takes the exclusive lock on `outputDir` (creating the folder), or throws an OutputError naming
 * the pid of the process that holds it. Extra folders (e.g. sorted_clusters_dir) are swept of
 * stale temporary files too.
 */
export function lockOutputDir(outputDir: string, sweep: readonly string[] = [], opts: { shared?: boolean } = {}): DirLock {
  return lockFile(resolve(outputDir), lockPath(resolve(outputDir)), sweep, !!opts.shared);
}

/**
 * The lock of a planned run's executor: `semdedup/plan.lock` exclusive (one planned run per
 * folder), then the folder's lock shared with the run's tasks.
 */
export function lockPlannedRun(outputDir: string): DirLock {
  const dir = resolve(outputDir);
  const plan = lockFile(dir, outputs.planLock(dir), [], false, 'planned run');
  try {
    const folder = lockOutputDir(dir, [], { shared: true });
    return { outputDir: dir, release: () => { folder.release(); plan.release(); } };
  } catch (e) {
    plan.release();
    throw e;
  }
}

function lockFile(dir: string, file: string, sweep: readonly string[], shared: boolean, what = 'run'): DirLock {
  const mine = held.get(file);
  if (mine) {
    // Nested in the holder's own work, or shared with shared: the same lock. Otherwise another
    // call of this process works on the folder: refuse as for another process.
    if (context.getStore()?.has(file) || (mine.shared && shared)) {
      mine.count++;
      return { outputDir: dir, release: () => releaseOne(file) };
    }
    throw inUse(dir, String(process.pid), what);
  }
  // The engine's own folder, its subfolders and its lock are never links: whoever planted one would
  // have the engine write through it, outside the output folder.
  refuseLinks(outputs.ours(dir));
  makeDir(outputs.ours(dir));
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new OutputError(`${file} is a symbolic link: the lock file of the output folder is never followed; remove the link`, { file, cause: e });
    throw new OutputError(`${file}: cannot open the lock file of the output folder: ${(e as Error).message}`, { file, cause: e });
  }
  const rc = loadNative().tryLockFd({ fd, shared });
  if (rc !== 0) {
    closeSync(fd);
    if (rc === 11 /* EWOULDBLOCK */) throw inUse(dir, holderOf(file), what);
    throw new OutputError(`${file}: cannot lock the output folder (errno ${rc})`, { file });
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch {
    // the pid is only for messages
  }
  held.set(file, { fd, count: 1, shared });
  // Temporary files of dead writers: only an exclusive holder knows no one else is writing.
  if (!shared) removeStaleTemps([dir, ...sweep]);
  return { outputDir: dir, release: () => releaseOne(file) };
}

function inUse(dir: string, pid: string, what: string): OutputError {
  return new OutputError(
    `${dir}: the output folder is in use by another semdedup ${what} (pid ${pid}); wait for it to finish or choose another output_dir`,
    { file: dir },
  );
}

function releaseOne(file: string): void {
  const h = held.get(file);
  if (!h) return;
  if (--h.count > 0) return;
  held.delete(file);
  try {
    closeSync(h.fd); // releases the lock
  } catch {
    // already closed
  }
}

/** Runs `fn` holding the lock on `outputDir`. */
export async function withLock<T>(outputDir: string, fn: () => Promise<T>, sweep: readonly string[] = []): Promise<T> {
  const lock = lockOutputDir(outputDir, sweep);
  const file = lockPath(resolve(outputDir));
  try {
    return await context.run(new Set([...(context.getStore() ?? []), file]), fn);
  } finally {
    lock.release();
  }
}
