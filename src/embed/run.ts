// Step 1 over a file of texts: the texts streamed in shards of a fixed number of rows, each shard
// embedded (batches sized by tokens) and written atomically as `embeddings/part-NNNNNN.npy` with
// its ids `ids/part-NNNNNN.txt` beside; `semdedup/embed.json` records the settings and every
// finished shard (size and sha256), so a rerun after a kill keeps the finished shards and redoes
// only the others, giving the bytes of an uninterrupted run. At the end `embeddings.yaml` names
// the shards for every other command (`semdedup run -c emb/embeddings.yaml …`).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InputError, OutputError, SemDedupError } from '../errors.js';
import { atomicWriteFile, makeDir } from '../io/atomic.js';
import { npyHeaderBytes } from '../io/npy.js';
import { lockOutputDir } from '../lock.js';
import { outputs } from '../layout.js';
import { loadEmbeddingModel, DEFAULT_BATCH_TOKENS, type EmbeddingModel, type EmbeddingModelOptions, type EmbedTiming } from './model.js';
import { readTexts, textFormat, type TextFormat } from './input.js';
import { toFloat16 } from '../io/half.js';

export interface EmbedProgress {
  stage: 'embed';
  /** Rows written or found finished. */
  done: number;
  /** Rows embedded per second in this run (finished shards found on disk not counted). */
  rowsPerSecond: number;
  /** The part of the input read so far (bytes, or rows of a Parquet file), 0 to 1. */
  fraction: number;
  shard: number;
}

export interface EmbedFileOptions extends EmbeddingModelOptions {
  /** The model folder, or a model loaded with loadEmbeddingModel (left open). */
  model: string | EmbeddingModel;
  /** The texts: .jsonl, .txt or .parquet. */
  input: string;
  format?: TextFormat;
  textField?: string;
  idField?: string;
  /** The output folder. */
  output: string;
  /** Element type of the shards (default float16). */
  dtype?: 'float16' | 'float32';
  /** Rows per shard (default 65536): memory is bounded by one shard's texts, tokens and vectors. */
  shardRows?: number;
  batchTokens?: number;
  signal?: AbortSignal;
  onProgress?: (p: EmbedProgress) => void;
}

export interface EmbedFileResult {
  rows: number;
  dim: number;
  dtype: 'float16' | 'float32';
  shards: number;
  /** Shards found finished and kept. */
  resumedShards: number;
  device: 'cpu' | 'cuda';
  /** The config naming the shards and their ids (every command reads it). */
  config: string;
  embeddings: string;
  ids: string;
  seconds: EmbedTiming & { read: number; write: number; total: number };
  rowsPerSecond: number;
}

/** Where the files of an embed output folder live. */
export const embedLayout = {
  embeddings: (out: string) => join(out, 'embeddings'),
  ids: (out: string) => join(out, 'ids'),
  shard: (out: string, i: number) => join(out, 'embeddings', `part-${String(i).padStart(6, '0')}.npy`),
  idsShard: (out: string, i: number) => join(out, 'ids', `part-${String(i).padStart(6, '0')}.txt`),
  state: (out: string) => join(outputs.ours(out), 'embed.json'),
  config: (out: string) => join(out, 'embeddings.yaml'),
};

interface ShardRecord {
  rows: number;
  embeddings: { size: number; sha256: string };
  ids: { size: number; sha256: string };
}

interface EmbedState {
  version: 1;
  params: Record<string, unknown>;
  shards: (ShardRecord | null)[];
  complete?: { rows: number; dim: number };
}

const sha256 = (chunks: readonly Uint8Array[]) => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

function fileMatches(file: string, rec: { size: number; sha256: string }): boolean {
  try {
    if (statSync(file).size !== rec.size) return false;
    return sha256([readFileSync(file)]) === rec.sha256;
  } catch {
    return false;
  }
}

function inputStamp(path: string): { path: string; size: number; mtimeNs: string } {
  const st = statSync(path, { bigint: true });
  return { path, size: Number(st.size), mtimeNs: String(st.mtimeNs) };
}

function writeState(out: string, state: EmbedState): void {
  atomicWriteFile(embedLayout.state(out), JSON.stringify(state, null, 1) + '\n');
}

/**
 * Embeds the texts of `input` into shards under `output` (see the file's header). Refuses an
 * output folder that holds other files, or the shards of other settings (input, model, dtype,
 * shard rows, batch size), naming what differs.
 */
export async function embedFile(o: EmbedFileOptions): Promise<EmbedFileResult> {
  const t00 = performance.now();
  const input = resolve(o.input);
  const out = resolve(o.output);
  const format = textFormat({ path: input, ...(o.format ? { format: o.format } : {}) });
  const dtype = o.dtype ?? 'float16';
  const shardRows = o.shardRows ?? 65536;
  if (!Number.isInteger(shardRows) || shardRows < 1) throw new InputError(`shard rows must be a positive integer, got ${shardRows}`, { key: 'shard_rows' });
  const batchTokens = o.batchTokens ?? DEFAULT_BATCH_TOKENS;
  if (!Number.isInteger(batchTokens) || batchTokens < 1) throw new InputError(`batch tokens must be a positive integer, got ${batchTokens}`, { key: 'batch_tokens' });
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new OutputError(`${out}: the output must be a folder`, { file: out });
    const foreign = readdirSync(out).filter((f) => !['embeddings', 'ids', 'semdedup', 'embeddings.yaml'].includes(f));
    if (foreign.length && !existsSync(embedLayout.state(out)))
      throw new OutputError(`${out}: the output folder holds other files (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}); give a new or empty folder`, { file: out });
  }

  const model = typeof o.model === 'string' ? await loadEmbeddingModel(o.model, o) : o.model;
  try {
    const params = {
      input: inputStamp(input),
      format,
      textField: format === 'text' ? null : (o.textField ?? 'text'),
      idField: o.idField ?? null,
      model: { dir: model.dir, fingerprint: model.fingerprint },
      dim: model.dim,
      dtype,
      shardRows,
      batchTokens,
    };
    const existed = existsSync(out);
    let wrote = false;
    const lock = lockOutputDir(out);
    try {
      let state: EmbedState = { version: 1, params, shards: [] };
      if (existsSync(embedLayout.state(out))) {
        let old: EmbedState;
        try {
          old = JSON.parse(readFileSync(embedLayout.state(out), 'utf8')) as EmbedState;
        } catch (e) {
          throw new OutputError(`${embedLayout.state(out)}: unreadable (${(e as Error).message}); remove the folder ${out} or choose another`, { file: embedLayout.state(out) });
        }
        const differs = Object.keys(params).filter((k) => JSON.stringify((old.params ?? {})[k]) !== JSON.stringify((params as Record<string, unknown>)[k]));
        if (differs.length)
          throw new OutputError(
            `${out}: holds embeddings made with other settings (${differs.join(', ')} differ${differs.includes('input') ? ': the input file changed' : ''}); remove the folder or choose another output`,
            { file: out },
          );
        state = { ...old, shards: old.shards ?? [] };
        delete state.complete;
      }
      makeDir(embedLayout.embeddings(out));
      makeDir(embedLayout.ids(out));

      const seconds = { tokenize: 0, infer: 0, pool: 0, read: 0, write: 0, total: 0 };
      let rows = 0;
      let embedded = 0;
      let resumed = 0;
      let shard = 0;
      const tRun = performance.now();
      const position = { fraction: 0 };
      const progress = () =>
        o.onProgress?.({ stage: 'embed', done: rows, rowsPerSecond: embedded / Math.max((performance.now() - tRun) / 1000, 1e-9), shard, fraction: position.fraction });

      const finishShard = async (texts: string[], ids: string[]): Promise<void> => {
        const rec = state.shards[shard];
        const embFile = embedLayout.shard(out, shard);
        const idsFile = embedLayout.idsShard(out, shard);
        if (rec && rec.rows === texts.length && fileMatches(embFile, rec.embeddings) && fileMatches(idsFile, rec.ids)) {
          resumed++;
          rows += texts.length;
          progress();
          return;
        }
        const before = rows;
        const embBefore = embedded;
        const vecs = await model.embed(texts, {
          batchTokens,
          timing: seconds,
          ...(o.signal ? { signal: o.signal } : {}),
          onBatch: (d) => {
            rows = before + d;
            embedded = embBefore + d;
            progress();
          },
        });
        const tw = performance.now();
        const body = dtype === 'float16' ? toFloat16(vecs) : vecs;
        const embChunks = [npyHeaderBytes(dtype === 'float16' ? '<f2' : '<f4', [texts.length, model.dim]), new Uint8Array(body.buffer, body.byteOffset, body.byteLength)];
        const idsChunks = [Buffer.from(ids.join('\n') + '\n', 'utf8')];
        wrote = true;
        atomicWriteFile(idsFile, idsChunks);
        atomicWriteFile(embFile, embChunks);
        state.shards[shard] = {
          rows: texts.length,
          embeddings: { size: embChunks.reduce((a, c) => a + c.byteLength, 0), sha256: sha256(embChunks) },
          ids: { size: idsChunks[0]!.byteLength, sha256: sha256(idsChunks) },
        };
        writeState(out, state);
        seconds.write += (performance.now() - tw) / 1000;
        rows = before + texts.length;
        progress();
      };

      let texts: string[] = [];
      let ids: string[] = [];
      let tr = performance.now();
      for await (const r of readTexts({ path: input, format, ...(o.textField ? { textField: o.textField } : {}), ...(o.idField ? { idField: o.idField } : {}) }, position)) {
        texts.push(r.text);
        ids.push(r.id);
        if (texts.length === shardRows) {
          seconds.read += (performance.now() - tr) / 1000;
          if (o.signal?.aborted) throw new SemDedupError('ERR_CANCELLED', 'cancelled');
          await finishShard(texts, ids);
          shard++;
          texts = [];
          ids = [];
          tr = performance.now();
        }
      }
      seconds.read += (performance.now() - tr) / 1000;
      if (texts.length > 0 || shard === 0) {
        if (texts.length === 0) throw new InputError(`${input}: no texts`, { file: input, key: 'input' });
        await finishShard(texts, ids);
        shard++;
      }
      // Shards past the end (an input that shrank cannot happen: its stamp is checked) are none.
      state.shards.length = shard;
      state.complete = { rows, dim: model.dim };
      const config =
        `# Written by semdedup embed: the embeddings and their ids, read by every command:\n` +
        `#   semdedup run -c ${embedLayout.config(out)} --set output_dir=OUT --set k=K\n` +
        `embeddings: embeddings\nids: ids\nids_format: text\n` +
        (model.normalize ? '' : `# The model does not L2-normalise its vectors: the run normalises a float32 copy.\nnormalize: always\n`);
      atomicWriteFile(embedLayout.config(out), config);
      writeState(out, state);
      seconds.total = (performance.now() - t00) / 1000;
      return {
        rows,
        dim: model.dim,
        dtype,
        shards: shard,
        resumedShards: resumed,
        device: model.device,
        config: embedLayout.config(out),
        embeddings: embedLayout.embeddings(out),
        ids: embedLayout.ids(out),
        seconds,
        rowsPerSecond: embedded / Math.max((performance.now() - tRun) / 1000, 1e-9),
      };
    } catch (e) {
      // Refused before any shard was written: a folder this call created goes again.
      if (!existed && !wrote) {
        lock.release();
        rmSync(out, { recursive: true, force: true });
      }
      throw e;
    } finally {
      lock.release();
    }
  } finally {
    if (typeof o.model === 'string') await model.close();
  }
}
