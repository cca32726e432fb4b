// Atomic file writes: the data goes to a temporary file in the target's folder, is flushed to
// disk, and is then renamed over the target. A reader never sees a partially written target,
// and on any failure the temporary file is removed and an OutputError naming the target is
// thrown.
//
// Outputs a user names (`-o`, `--output`, `--matches`) go through `openOutputWriter`: `-` is the
// standard output; a FIFO or a character device (a terminal, /dev/null) is opened and written
// through, never replaced; a symbolic link is refused (the engine never follows a link it did not
// create, and never replaces what the user's path points at); a regular file, or a new name, is
// written atomically as above.

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
    try {
      off += fs.writeSync(fd, chunk, off, len);
    } catch (e) {
      // A pipe in non-blocking mode (the standard output, once Node has opened it) is full: wait for the reader.
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
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

/** What a user-named output is: the standard output, a stream written through (FIFO, character device), or a file written atomically. */
export type OutputTarget = 'stdout' | 'stream' | 'file';

/** The standard output's name for `-o`. */
export const STDOUT_NAME = '-';

/**
 * How a user-named output will be written, checked before anything is computed: `-` is the
 * standard output, a FIFO or character device is written through, a missing name or a regular
 * file is written atomically. A symbolic link, a block device, a socket or a folder is refused
 * with an OutputError naming `flag` and the file.
 */
export function outputTarget(target: string, flag = '-o'): OutputTarget {
  if (target === STDOUT_NAME) return 'stdout';
  let st: fs.Stats;
  try {
    st = fs.lstatSync(target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'file';
    throw new OutputError(`${flag} ${target}: cannot be written: ${describe(e)}`, { file: target, cause: e });
  }
  if (st.isSymbolicLink())
    throw new OutputError(
      `${flag} ${target} is a symbolic link: the engine neither follows a link it did not create nor replaces it; ` +
        `give the file it points to (\`realpath ${target}\`)${/^\/dev\/(stdout|fd\/1)$/.test(target) ? ', or `-o -` for the standard output' : ''}`,
      { file: target },
    );
  if (st.isFIFO() || st.isCharacterDevice()) return 'stream';
  if (st.isFile()) return 'file';
  const what = st.isDirectory() ? 'a folder' : st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a regular file';
  throw new OutputError(`${flag} ${target} is ${what}: give a file name (or \`-o -\` for the standard output)`, { file: target });
}

/**
 * Opens a user-named output (see `outputTarget`): the standard output and FIFOs or character
 * devices are written through their descriptor (commit flushes nothing and renames nothing; the
 * standard output is never closed); anything else atomically, as `openAtomicWriter`.
 */
export function openOutputWriter(target: string, flag = '-o'): AtomicWriter {
  const kind = outputTarget(target, flag);
  if (kind === 'file') return openAtomicWriter(target);
  let fd: number;
  if (kind === 'stdout') fd = 1;
  else {
    try {
      // O_NOFOLLOW: a link swapped in since the check is refused by the kernel.
      fd = fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
    } catch (err) {
      throw new OutputError(`${target}: cannot write: ${describe(err)}`, { file: target, cause: err });
    }
    const st = fs.fstatSync(fd);
    if (!st.isFIFO() && !st.isCharacterDevice()) {
      // Replaced by a regular file since the check: write that atomically instead.
      fs.closeSync(fd);
      return openAtomicWriter(target);
    }
  }
  let open = true;
  const close = (): void => {
    if (open && fd !== 1) {
      try {
        fs.closeSync(fd);
      } catch {
        // ignore
      }
    }
    open = false;
  };
  const name = kind === 'stdout' ? 'the standard output' : target;
  return {
    target,
    tempPath: target,
    fd,
    write(chunk: Uint8Array | string): void {
      writeChunk(fd, open, name, target, chunk, (err) => {
        close();
        throw new OutputError(`${name}: cannot write: ${describe(err)}`, { file: target, cause: err });
      });
    },
    commit: close,
    abort: close,
  };
}

/** `atomicWriteFile` for a user-named output (see `openOutputWriter`). */
export function writeOutputFile(target: string, data: Buffer | string | Uint8Array | readonly Uint8Array[], flag = '-o'): void {
  writeAllThrough(openOutputWriter(target, flag), data);
}

/**
 * One chunk (a string as UTF-8) to a writer's open descriptor; `fail` cleans up and throws.
 * `name` is how messages name the output.
 */
function writeChunk(fd: number, open: boolean, name: string, target: string, chunk: Uint8Array | string, fail: (err: unknown) => never): void {
  if (!open) throw new OutputError(`${name}: write after the file was closed`, { file: target });
  try {
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) {
      throw new TypeError(`data chunks must be strings or Uint8Arrays, got ${typeof chunk}`);
    }
    writeAll(fd, typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  } catch (err) {
    fail(err);
  }
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
      writeChunk(fd, open, target, target, chunk, fail);
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
  writeAllThrough(openAtomicWriter(target), data);
}

/** Every chunk of `data` through an open writer, then commit; abort on a failure. */
function writeAllThrough(w: AtomicWriter, data: Buffer | string | Uint8Array | readonly Uint8Array[]): void {
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
