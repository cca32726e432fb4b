// Inputs given as several files: a list, a glob or a folder, resolved to the files in order.
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.js';

const GLOB_CHARS = /[*?[]/;

/** `*`, `?` and `[...]` of one path component as a regular expression. */
function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const j = pattern.indexOf(']', i + 2);
      if (j < 0) re += '\\[';
      else {
        let body = pattern.slice(i + 1, j);
        if (body.startsWith('!')) body = '^' + body.slice(1);
        re += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = j;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The files of an embeddings (or ids) source, in order: a list as given; a glob's matches and a
 * folder's files sorted by name (a folder: its `.npy` files when it holds any, else its other
 * files; names starting with a dot are left out). One plain file: itself.
 */
export function resolveInputFiles(source: string | readonly string[], what = 'embeddings', key = 'embeddings'): string[] {
  if (Array.isArray(source)) {
    if (source.length === 0) throw new InputError(`\`${key}\` is an empty list: no ${what} files`, { key });
    return [...source];
  }
  const path = source as string;
  if (GLOB_CHARS.test(basename(path)) && !existsSync(path)) {
    const dir = dirname(path);
    if (GLOB_CHARS.test(dir)) throw new InputError(`${path}: wildcards are allowed in the file name only, not in its folder`, { file: path, key });
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InputError(`${path}: the folder ${dir} of the ${what} pattern does not exist`, { file: path, key });
    const re = globRegExp(basename(path));
    const files = readdirSync(dir).filter((f) => re.test(f) && !f.startsWith('.')).sort(byName).map((f) => join(dir, f));
    if (files.length === 0) throw new InputError(`${path}: no ${what} file matches the pattern`, { file: path, key });
    return files;
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    const all = readdirSync(path).filter((f) => !f.startsWith('.')).sort(byName);
    const npy = all.filter((f) => f.endsWith('.npy'));
    const files = (npy.length ? npy : all).map((f) => join(path, f)).filter((f) => statSync(f).isFile());
    if (files.length === 0) throw new InputError(`${path}: the ${what} folder holds no files`, { file: path, key });
    return files;
  }
  return [path];
}

/** Text naming an embeddings source in messages. */
export function sourceName(source: string | readonly string[]): string {
  return Array.isArray(source) ? (source.length === 1 ? source[0]! : `${source[0]} … (${source.length} files)`) : (source as string);
}


const MAGIC = Buffer.from('PAR1');

/** True when the file starts and ends with the Parquet magic bytes `PAR1`. */
export function isParquetFile(path: string): boolean {
  let fd: number | undefined;
  try {
    const size = statSync(path).size;
    if (size < 12) return false;
    fd = openSync(path, 'r');
    const head = Buffer.alloc(4);
    const tail = Buffer.alloc(4);
    readSync(fd, head, 0, 4, 0);
    readSync(fd, tail, 0, 4, size - 4);
    return head.equals(MAGIC) && tail.equals(MAGIC);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

