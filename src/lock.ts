// One run per output folder: an exclusive lock (flock) on `semdedup/lock` in the output folder,
// held while a command works on it and released by the kernel when the process ends, however it
// ends (no stale lock after a crash or a kill). A second run on the folder refuses at once,
// naming the process that holds it. Taking the lock also removes the temporary files that dead
// writers left in the folder.
import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { OutputError } from './errors.js';
import { makeDir, refuseLinks, removeStaleTemps } from './io/atomic.js';
import { outputs } from './layout.js';
import { loadNative } from './native.js';

interface Held {
  fd: number;
  count: number;
}

// Locks this process holds, by folder: a command that runs others (run: cluster, sort, ...) takes
// the lock once and the nested commands share it.
const held = new Map<string, Held>();

export function lockPath(outputDir: string): string {
  return join(outputs.ours(outputDir), 'lock');
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
export function lockOutputDir(outputDir: string, sweep: readonly string[] = []): DirLock {
  const dir = resolve(outputDir);
  const mine = held.get(dir);
  if (mine) {
    mine.count++;
    return { outputDir: dir, release: () => releaseOne(dir) };
  }
  // The engine's own folder, its subfolders and its lock are never links: whoever planted one would
  // have the engine write through it, outside the output folder.
  refuseLinks(outputs.ours(dir));
  makeDir(outputs.ours(dir));
  const file = lockPath(dir);
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP')
      throw new OutputError(`${file} is a symbolic link: the lock file of the output folder is never followed; remove the link`, { file, cause: e });
    throw new OutputError(`${file}: cannot open the lock file of the output folder: ${(e as Error).message}`, { file, cause: e });
  }
  const rc = loadNative().tryLockFd(fd);
  if (rc !== 0) {
    closeSync(fd);
    if (rc === 11 /* EWOULDBLOCK */)
      throw new OutputError(
        `${dir}: the output folder is in use by another semdedup run (pid ${holderOf(file)}); wait for it to finish or choose another output_dir`,
        { file: dir },
      );
    throw new OutputError(`${file}: cannot lock the output folder (errno ${rc})`, { file });
  }
  try {
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
  } catch {
    // the pid is only for messages
  }
  held.set(dir, { fd, count: 1 });
  removeStaleTemps([dir, ...sweep]);
  return { outputDir: dir, release: () => releaseOne(dir) };
}

function releaseOne(dir: string): void {
  const h = held.get(dir);
  if (!h) return;
  if (--h.count > 0) return;
  held.delete(dir);
  try {
    closeSync(h.fd); // releases the lock
  } catch {
    // already closed
  }
}

/** Runs `fn` holding the lock on `outputDir`. */
export async function withLock<T>(outputDir: string, fn: () => Promise<T>, sweep: readonly string[] = []): Promise<T> {
  const lock = lockOutputDir(outputDir, sweep);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
