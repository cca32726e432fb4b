// step 1 (docs/algorithm.md) (the original's get_embeddings): run a model over a data loader and write each
// batch's L2-normalised vectors and ids by index into writable memmaps.
import { openSync, closeSync, writeSync, ftruncateSync } from 'node:fs';
import { InputError, OutputError } from '../errors.js';
import type { Embeddings } from '../embeddings.js';

/** A batch from the data loader: the data, its ids ("paths") and the rows they go to. */
export type Batch<T> = { data: T; paths: readonly string[]; indices: readonly number[] } | readonly [T, readonly string[], readonly number[]];

/** Any async function from a batch of data to one vector per example. */
export type Model<T> = (data: T) => Promise<ArrayLike<ArrayLike<number>> | Float32Array> | ArrayLike<ArrayLike<number>> | Float32Array;

/** A writable fixed-width ids file in the original's format (`np.memmap(path, dtype='S24')`). */
export class PathsMemmap {
  private fd: number;
  readonly length: number;
  readonly width: number;
  readonly path: string;
  constructor(path: string, n: number, dtype = 'S24') {
    const m = /^\|?S(\d+)$/.exec(dtype);
    if (!m) throw new InputError(`paths memmap dtype must be like S24, got '${dtype}'`, { key: 'ids_dtype' });
    this.width = Number(m[1]);
    this.length = n;
    this.path = path;
    try {
      this.fd = openSync(path, 'w');
      ftruncateSync(this.fd, n * this.width);
    } catch (e) {
      throw new OutputError(`${path}: cannot create the paths memmap: ${(e as Error).message}`, { file: path, cause: e });
    }
  }
  set(i: number, id: string): void {
    const b = Buffer.alloc(this.width);
    const enc = Buffer.from(id, 'utf8');
    if (enc.length > this.width)
      throw new InputError(`id '${id}' is ${enc.length} bytes, longer than the paths memmap width S${this.width}`);
    enc.copy(b);
    writeSync(this.fd, b, 0, this.width, i * this.width);
  }
  close(): void {
    closeSync(this.fd);
  }
}

function parts<T>(b: Batch<T>): { data: T; paths: readonly string[]; indices: readonly number[] } {
  if (Array.isArray(b)) return { data: b[0] as T, paths: b[1] as readonly string[], indices: b[2] as readonly number[] };
  return b as { data: T; paths: readonly string[]; indices: readonly number[] };
}

/**
 * For each batch (in any order): emb[indices] = normalize(model(data)); paths[indices] = ids.
 * Each row must be written once. Returns the number of rows written.
 */
export async function getEmbeddings<T>(
  model: Model<T>,
  dataloader: AsyncIterable<Batch<T>> | Iterable<Batch<T>>,
  embMemmap: Embeddings,
  pathsMemmap?: PathsMemmap,
): Promise<number> {
  const view = embMemmap.view();
  if (!(view instanceof Float32Array)) throw new InputError('getEmbeddings writes float32 embeddings; create the file with dtype float32');
  const d = embMemmap.d;
  const written = new Uint8Array(embMemmap.n);
  let count = 0;
  for await (const raw of dataloader as AsyncIterable<Batch<T>>) {
    const { data, paths, indices } = parts(raw);
    const out = await model(data);
    const rows = out instanceof Float32Array ? out.length / d : out.length;
    if (rows !== indices.length || paths.length !== indices.length)
      throw new InputError(`a batch has ${indices.length} indices, ${paths.length} paths and ${rows} model outputs; they must match`);
    for (let r = 0; r < rows; r++) {
      const idx = indices[r]!;
      if (!Number.isInteger(idx) || idx < 0 || idx >= embMemmap.n) throw new InputError(`batch index ${idx} is outside [0, ${embMemmap.n})`);
      if (written[idx]) throw new InputError(`row ${idx} is written twice by the data loader`);
      written[idx] = 1;
      const vec = out instanceof Float32Array ? out.subarray(r * d, (r + 1) * d) : out[r]!;
      if (vec.length !== d) throw new InputError(`the model returned a vector of ${vec.length} values, expected ${d}`);
      let s = 0;
      for (let j = 0; j < d; j++) s += vec[j]! * vec[j]!;
      const inv = s > 0 ? 1 / Math.sqrt(s) : 0; // torch's normalize leaves zero vectors at zero
      for (let j = 0; j < d; j++) view[idx * d + j] = vec[j]! * inv;
      pathsMemmap?.set(idx, paths[r]!);
      count++;
    }
  }
  embMemmap.native.sync();
  return count;
}
