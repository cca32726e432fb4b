// Streaming file hashes: one read buffer (the calls are synchronous, so one is enough even when
// thousands of shards are hashed in one check).
import { closeSync, openSync, readSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';

let buf: Buffer | undefined;

/** Feeds the bytes of `path` into `h`. */
export function hashFileInto(h: Hash, path: string): Hash {
  const fd = openSync(path, 'r');
  try {
    const b = (buf ??= Buffer.allocUnsafe(1 << 20));
    for (;;) {
      const n = readSync(fd, b, 0, b.length, null);
      if (n <= 0) break;
      h.update(b.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h;
}

/** The sha256 of a file, hex. */
export function sha256OfFile(path: string): string {
  return hashFileInto(createHash('sha256'), path).digest('hex');
}
