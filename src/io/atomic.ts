// Atomic file writes: the data goes to a temporary file in the target's folder, is flushed to
// disk, and is then renamed over the target. A reader never sees a partially written target,
// and on any failure the temporary file is removed and an OutputError naming the target is
// thrown.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputError } from '../errors.js';

/** Name of a fresh temporary file next to `target`. */
export function tempPathFor(target: string): string {
  const dir = path.dirname(target);
  const base = path.basename(target);
  return path.join(dir, `${base}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

function describe(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && 'message' in err) {
    const e = err as NodeJS.ErrnoException;
    return e.message;
  }
  return String(err);
}

function removeQuietly(p: string): void {
  try {
    fs.rmSync(p, { force: true });
  } catch {
    // nothing more can be done
  }
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let off = 0;
  while (off < chunk.byteLength) {
    // Write in pieces of at most 1 GiB: some platforms reject larger single writes.
    const len = Math.min(chunk.byteLength - off, 1 << 30);
    const n = fs.writeSync(fd, chunk, off, len);
    off += n;
  }
}

function toChunks(data: Buffer | string | Uint8Array | readonly Uint8Array[]): Uint8Array[] {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  return [...data];
}

/**
 * A file being written atomically: append chunks with `write`, then `commit` (flush, rename
 * over the target) or `abort` (remove the temporary file). Errors are OutputErrors naming the
 * target.
 */
export interface AtomicWriter {
  readonly target: string;
  readonly tempPath: string;
  /** Open file descriptor of the temporary file (for positional writes). */
  readonly fd: number;
  write(chunk: Uint8Array | string): void;
  commit(): void;
  abort(): void;
}

export function openAtomicWriter(target: string): AtomicWriter {
  const tmp = tempPathFor(target);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
  } catch (err) {
    removeQuietly(tmp);
    throw new OutputError(`${target}: cannot write: ${describe(err)}`, { file: target, cause: err });
  }
  let open = true;
  // Closes the descriptor if still open and removes the temporary file.
  const discard = (): void => {
    if (open) {
      try {
        fs.closeSync(fd);
      } catch {
        // ignore
      }
      open = false;
    }
    removeQuietly(tmp);
  };
  const fail = (err: unknown): never => {
    discard();
    if (err instanceof OutputError) throw err;
    throw new OutputError(`${target}: cannot write: ${describe(err)}`, { file: target, cause: err });
  };
  return {
    target,
    tempPath: tmp,
    fd,
    write(chunk: Uint8Array | string): void {
      if (!open) throw new OutputError(`${target}: write after the file was closed`, { file: target });
      try {
        if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
          throw new TypeError(`data chunks must be strings or Uint8Arrays, got ${typeof chunk}`);
        }
        writeAll(fd, typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
      } catch (err) {
        fail(err);
      }
    },
    commit(): void {
      if (!open) throw new OutputError(`${target}: commit after the file was closed`, { file: target });
      try {
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        open = false;
        fs.renameSync(tmp, target);
      } catch (err) {
        fail(err);
      }
      // Make the rename durable where the platform allows syncing a directory.
      try {
        const dfd = fs.openSync(path.dirname(target), 'r');
        try {
          fs.fsyncSync(dfd);
        } finally {
          fs.closeSync(dfd);
        }
      } catch {
        // not supported (e.g. Windows): the rename itself is still atomic
      }
    },
    abort: discard,
  };
}

/**
 * Write `data` (a buffer, a UTF-8 string, or a list of chunks written in order) to `target`
 * atomically. Throws OutputError naming `target` on failure; the target is then unchanged.
 */
export function atomicWriteFile(target: string, data: Buffer | string | Uint8Array | readonly Uint8Array[]): void {
  const w = openAtomicWriter(target);
  try {
    for (const chunk of toChunks(data)) w.write(chunk);
  } catch (err) {
    w.abort();
    throw err;
  }
  w.commit();
}

/** The name pattern of temporary files (`<file>.tmp-<pid>-<hex>`), with the writer's pid. */
const TEMP_NAME = /\.tmp-(\d+)-[0-9a-f]{12}$/;

/**
 * Whether process `pid` of this host is alive (this process is). A zombie (a process that has
 * exited but that its parent has not reaped) answers kill(0) but runs no more: it is dead here,
 * so that its temporary files and records are cleaned up like any dead writer's.
 */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    // Without /proc (not Linux), kill(0) is all there is; with it, a vanished entry means gone.
    return !((e as NodeJS.ErrnoException).code === 'ENOENT' && fs.existsSync('/proc/self/stat'));
  }
  // pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * Removes temporary files left by writers that died between writing and renaming: every
 * `<file>.tmp-<pid>-<hex>` of a process that no longer runs, in `dirs` and their subfolders
 * (to `depth` levels). Returns the removed paths. Missing folders are skipped.
 */
export function removeStaleTemps(dirs: readonly string[], depth = 3): string[] {
  const removed: string[] = [];
  const seen = new Set<string>();
  const walk = (dir: string, level: number): void => {
    const abs = path.resolve(dir);
    if (seen.has(abs)) return;
    seen.add(abs);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(abs, e.name);
      if (e.isDirectory()) {
        if (level < depth) walk(p, level + 1);
        continue;
      }
      const m = TEMP_NAME.exec(e.name);
      if (m && !pidAlive(Number(m[1]))) {
        removeQuietly(p);
        removed.push(p);
      }
    }
  };
  for (const d of dirs) walk(d, 0);
  return removed;
}

/**
 * Refuses a symbolic link anywhere in `root` (the engine's own folder of an output folder), `root`
 * itself included: whoever planted one would have the engine write through it, outside the folder.
 * A missing root is fine. Throws an OutputError naming the first link found.
 */
export function refuseLinks(root: string, depth = 4): void {
  const walk = (p: string, level: number): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      return;
    }
    if (st.isSymbolicLink())
      throw new OutputError(`${p} is a symbolic link: the engine's own files and folders (${root}) are never links; remove it`, { file: p });
    if (!st.isDirectory() || level >= depth) return;
    for (const name of fs.readdirSync(p)) walk(path.join(p, name), level + 1);
  };
  walk(path.resolve(root), 0);
}

/**
 * Creates `dir` and its missing parents one level at a time (never loops: a folder that cannot
 * be created, e.g. under /proc, is an OutputError naming it).
 */
export function makeDir(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let cur = abs;
  for (;;) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(cur);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw new OutputError(`${dir}: the output folder cannot be created: ${describe(e)}`, { file: dir, cause: e });
    }
    if (st) {
      if (!st.isDirectory()) throw new OutputError(`${dir}: the output folder cannot be created: ${cur} is not a folder`, { file: dir });
      break;
    }
    missing.push(cur);
    const up = path.dirname(cur);
    if (up === cur) break;
    cur = up;
  }
  for (let i = missing.length - 1; i >= 0; i--) {
    const p = missing[i]!;
    try {
      fs.mkdirSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && fs.statSync(p).isDirectory()) continue;
      throw new OutputError(`${dir}: the output folder cannot be created: ${describe(e)}`, { file: dir, cause: e });
    }
  }
}
