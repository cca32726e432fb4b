// A local sentence-transformers model in the layout people download (an ONNX export:
// `model.onnx` or `onnx/model.onnx`, `tokenizer.json`, the pooling config), run with
// onnxruntime-node and tokenised with Hugging Face's tokenizers library (the Rust implementation
// Python uses). Nothing is downloaded: a missing file is an error naming it.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { InputError, SemDedupError } from '../errors.js';
import { copyPooledInto, poolInto, POOLING_KEYS, POOLING_MODES, type PoolingMode } from './pooling.js';
import { halfToFloat } from '../io/half.js';
import { hashFileInto } from '../io/hash.js';

export type EmbedDevice = 'auto' | 'cpu' | 'cuda';

export interface EmbeddingModelOptions {
  /** 'auto' (default): the CUDA execution provider when onnxruntime-node has it and it starts, else the CPU. */
  device?: EmbedDevice;
  /** Intra-op threads of the CPU execution provider (0 or absent: all cores). */
  threads?: number;
  /** Tokens per text, special tokens included (default: the model's `max_seq_length`). */
  maxSeqLength?: number;
  /** 'model' (default): L2-normalise when the model's modules.json has a Normalize module; 'always'; 'never'. */
  normalize?: 'model' | 'always' | 'never';
  /** Text put before every text (default: the model's default prompt, if it names one). */
  prompt?: string;
  log?: (line: string) => void;
}

/** Seconds spent in each part of embedding, added up over calls. */
export interface EmbedTiming {
  tokenize: number;
  infer: number;
  pool: number;
}

export interface EmbedCallOptions {
  signal?: AbortSignal;
  /** Padded tokens per inference batch (rows × the longest row); default 16384. */
  batchTokens?: number;
  /** Called after each inference batch with the rows done so far (of this call). */
  onBatch?: (rowsDone: number) => void;
  /** Seconds are added here. */
  timing?: EmbedTiming;
}

export interface EmbeddingModel {
  readonly dir: string;
  /** The vector length. */
  readonly dim: number;
  readonly maxSeqLength: number;
  readonly pooling: readonly PoolingMode[] | 'model';
  readonly normalize: boolean;
  /** The execution provider that runs it. */
  readonly device: 'cpu' | 'cuda';
  /** sha256 over the model's files and the settings that decide its vectors. */
  readonly fingerprint: string;
  /** One L2-normalised (per the model) row per text, rows × dim, in the order given. */
  embed(texts: readonly string[], opts?: EmbedCallOptions): Promise<Float32Array>;
  close(): Promise<void>;
}

type Ort = typeof import('onnxruntime-node');
type Session = Awaited<ReturnType<Ort['InferenceSession']['create']>>;
type Tok = import('tokenizers').Tokenizer;

export const DEFAULT_BATCH_TOKENS = 16384;
const TOKENIZE_CHUNK = 2048;

interface Encoded {
  ids: Int32Array;
  types: Uint8Array;
}

function readJson(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read the ${what}: ${(e as Error).message}`, { file });
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object') throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`${file}: the ${what} is not valid JSON: ${(e as Error).message}`, { file });
  }
}

function optionalJson(file: string, what: string): Record<string, unknown> | undefined {
  return existsSync(file) ? readJson(file, what) : undefined;
}

/** The model's files and settings, read and checked without loading anything heavy. */
export interface ModelLayout {
  dir: string;
  onnx: string;
  tokenizer: string;
  pooling: PoolingMode[] | 'model';
  poolingFile?: string;
  normalize: boolean;
  maxSeqLength: number;
  lowercase: boolean;
  prompt: string;
  files: string[];
}

export function readModelLayout(dirIn: string, opts: EmbeddingModelOptions = {}): ModelLayout {
  const dir = resolve(dirIn);
  if (!existsSync(dir)) throw new InputError(`${dir}: model folder not found`, { file: dir, key: 'model' });
  if (!statSync(dir).isDirectory()) throw new InputError(`${dir}: the model must be a folder (an ONNX export of a sentence-transformers model)`, { file: dir, key: 'model' });
  const onnx = [join(dir, 'model.onnx'), join(dir, 'onnx', 'model.onnx')].find((f) => existsSync(f));
  if (!onnx) throw new InputError(`${join(dir, 'model.onnx')} not found (nor ${join(dir, 'onnx', 'model.onnx')}): the model folder needs the ONNX export of the model`, { file: join(dir, 'model.onnx'), key: 'model' });
  const tokenizer = join(dir, 'tokenizer.json');
  if (!existsSync(tokenizer)) throw new InputError(`${tokenizer} not found: the model folder needs the tokenizer (tokenizer.json, as saved by Hugging Face tokenizers)`, { file: tokenizer, key: 'model' });
  const files = [onnx, tokenizer];

  // modules.json names the pooling folder and whether a Normalize module follows it.
  const modulesFile = join(dir, 'modules.json');
  let poolingDir = join(dir, '1_Pooling');
  let normalizeModule = false;
  if (existsSync(modulesFile)) {
    files.push(modulesFile);
    let mods: unknown;
    try {
      mods = JSON.parse(readFileSync(modulesFile, 'utf8'));
    } catch (e) {
      throw new InputError(`${modulesFile}: not valid JSON: ${(e as Error).message}`, { file: modulesFile });
    }
    if (!Array.isArray(mods)) throw new InputError(`${modulesFile}: expected a list of modules`, { file: modulesFile });
    for (const m of mods as { type?: unknown; path?: unknown }[]) {
      const type = String(m?.type ?? '');
      if (type.endsWith('.Pooling') && typeof m.path === 'string') poolingDir = join(dir, m.path);
      else if (type.endsWith('.Normalize')) normalizeModule = true;
      else if (type.endsWith('.Dense') || type.endsWith('.LayerNorm') || type.endsWith('.WeightedLayerPooling'))
        throw new InputError(`${modulesFile}: the model has a ${type.split('.').pop()} module after pooling, which is not part of the ONNX export; export the whole model (with its pooling) or use a model without it`, { file: modulesFile });
    }
  }
  const poolingFile = join(poolingDir, 'config.json');
  let pooling: PoolingMode[] | 'model';
  if (existsSync(poolingFile)) {
    files.push(poolingFile);
    const cfg = readJson(poolingFile, 'pooling config');
    pooling = POOLING_MODES.filter((m) => cfg[POOLING_KEYS[m]] === true);
    if (pooling.length === 0) throw new InputError(`${poolingFile}: no pooling mode is true (expected one of ${Object.values(POOLING_KEYS).join(', ')})`, { file: poolingFile });
  } else {
    pooling = 'model'; // decided once the model's outputs are known: a pooled output, or an error naming the file
  }
  const sbert = optionalJson(join(dir, 'sentence_bert_config.json'), 'sentence-transformers config');
  if (sbert) files.push(join(dir, 'sentence_bert_config.json'));
  const stCfgFile = join(dir, 'config_sentence_transformers.json');
  const stCfg = optionalJson(stCfgFile, 'sentence-transformers config');
  if (stCfg) files.push(stCfgFile);
  let maxSeqLength = opts.maxSeqLength;
  if (maxSeqLength === undefined) {
    const cands: [unknown, string][] = [
      [sbert?.max_seq_length, 'sentence_bert_config.json max_seq_length'],
      [optionalJson(join(dir, 'tokenizer_config.json'), 'tokenizer config')?.model_max_length, 'tokenizer_config.json model_max_length'],
      [optionalJson(join(dir, 'config.json'), 'model config')?.max_position_embeddings, 'config.json max_position_embeddings'],
    ];
    const found = cands.find(([v]) => typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 1e6);
    maxSeqLength = found ? (found[0] as number) : 512;
  }
  if (!Number.isInteger(maxSeqLength) || maxSeqLength < 1) throw new InputError(`max_seq_length must be a positive integer, got ${maxSeqLength}`, { key: 'max_seq_length' });
  let prompt = opts.prompt ?? '';
  if (opts.prompt === undefined && stCfg && typeof stCfg.default_prompt_name === 'string') {
    const p = (stCfg.prompts as Record<string, unknown> | undefined)?.[stCfg.default_prompt_name];
    if (typeof p !== 'string') throw new InputError(`${stCfgFile}: default_prompt_name '${stCfg.default_prompt_name}' is not in prompts`, { file: stCfgFile });
    prompt = p;
  }
  const normalize = opts.normalize === 'always' ? true : opts.normalize === 'never' ? false : normalizeModule;
  return { dir, onnx, tokenizer, pooling, ...(pooling !== 'model' ? { poolingFile } : {}), normalize, maxSeqLength, lowercase: sbert?.do_lower_case === true, prompt, files };
}

function fingerprintOf(layout: ModelLayout): string {
  const h = createHash('sha256');
  for (const f of layout.files) {
    h.update(`${f.slice(layout.dir.length)}\0`);
    hashFileInto(h, f);
  }
  h.update(JSON.stringify({ pooling: layout.pooling, normalize: layout.normalize, maxSeqLength: layout.maxSeqLength, lowercase: layout.lowercase, prompt: layout.prompt }));
  return h.digest('hex');
}

/** Why onnxruntime-node cannot offer its CUDA execution provider here, or '' when its library is installed. */
function cudaMissing(): string {
  let bin: string;
  try {
    bin = join(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return 'onnxruntime-node not found';
  }
  const lib = join(bin, process.platform === 'win32' ? 'onnxruntime_providers_cuda.dll' : 'libonnxruntime_providers_cuda.so');
  return existsSync(lib) ? '' : `${lib} is not installed (onnxruntime-node's install fetches it on Linux x64 unless ONNXRUNTIME_NODE_INSTALL=skip)`;
}

async function importOrt(): Promise<Ort> {
  try {
    return (await import('onnxruntime-node')) as Ort;
  } catch (e) {
    throw new SemDedupError('ERR_BACKEND', `onnxruntime-node could not be loaded (${(e as Error).message}): \`npm install onnxruntime-node\` (an optional dependency of semdedup) runs the model`);
  }
}

/** Loads the model: the tokenizer, the ONNX session, and one empty text through it (which gives the dimension). */
export async function loadEmbeddingModel(dir: string, opts: EmbeddingModelOptions = {}): Promise<EmbeddingModel> {
  const layout = readModelLayout(dir, opts);
  const { Tokenizer } = await import('tokenizers');
  let tok: Tok;
  try {
    tok = Tokenizer.fromFile(layout.tokenizer);
  } catch (e) {
    throw new InputError(`${layout.tokenizer}: not a tokenizer the tokenizers library reads: ${(e as Error).message}`, { file: layout.tokenizer });
  }
  tok.disablePadding();
  tok.setTruncation(layout.maxSeqLength);
  const vocab = tok.getVocab(true);
  const tj = readJson(layout.tokenizer, 'tokenizer');
  const padFromFile = (tj.padding as { pad_id?: unknown } | null)?.pad_id;
  const padId = typeof padFromFile === 'number' ? padFromFile : vocab['[PAD]'] ?? vocab['<pad>'] ?? 0;

  const ort = await importOrt();
  const device = opts.device ?? 'auto';
  const threads = opts.threads && opts.threads > 0 ? opts.threads : cpus().length;
  const base = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
  let session: Session | undefined;
  let ran: 'cpu' | 'cuda' = 'cpu';
  if (device !== 'cpu') {
    const why0 = cudaMissing();
    try {
      if (why0) throw new Error(why0);
      session = await ort.InferenceSession.create(layout.onnx, { ...base, executionProviders: ['cuda', 'cpu'] });
      ran = 'cuda';
    } catch (e) {
      const why = (e as Error).message.split('\n')[0];
      if (device === 'cuda') throw new SemDedupError('ERR_BACKEND', `the CUDA execution provider of onnxruntime-node cannot run ${layout.onnx}: ${why}`, { file: layout.onnx });
      opts.log?.(`embed: CPU (CUDA execution provider not available: ${why})`);
    }
  }
  if (!session) {
    try {
      session = await ort.InferenceSession.create(layout.onnx, { ...base, executionProviders: ['cpu'] });
    } catch (e) {
      throw new InputError(`${layout.onnx}: onnxruntime cannot load the model: ${(e as Error).message}`, { file: layout.onnx, key: 'model' });
    }
  }
  const sess = session;
  const inputs = sess.inputNames;
  for (const name of inputs)
    if (!['input_ids', 'attention_mask', 'token_type_ids', 'position_ids'].includes(name))
      throw new InputError(`${layout.onnx}: the model takes an input '${name}'; supported are input_ids, attention_mask, token_type_ids and position_ids`, { file: layout.onnx });
  if (!inputs.includes('input_ids')) throw new InputError(`${layout.onnx}: the model has no input 'input_ids'`, { file: layout.onnx });
  const outName = ['token_embeddings', 'last_hidden_state', 'sentence_embedding'].find((n) => sess.outputNames.includes(n)) ?? sess.outputNames[0]!;
  const inputType = (name: string): string => {
    const md = (sess as unknown as { inputMetadata?: { name: string; type?: string }[] }).inputMetadata;
    return md?.find((m) => m.name === name)?.type ?? 'int64';
  };
  let dim = 0;

  /** The model's inputs for a batch, padded to its longest row. */
  const feedsFor = (encs: Encoded[]) => {
    const B = encs.length;
    const L = Math.max(...encs.map((e) => e.ids.length));
    const ids = new Array<number>(B * L).fill(padId);
    const mask = new Array<number>(B * L).fill(0);
    const types = new Array<number>(B * L).fill(0);
    encs.forEach((e, b) => {
      for (let t = 0; t < e.ids.length; t++) {
        ids[b * L + t] = e.ids[t]!;
        mask[b * L + t] = 1;
        types[b * L + t] = e.types[t] ?? 0;
      }
    });
    const tensor = (name: string, v: number[]) =>
      inputType(name) === 'int32' ? new ort.Tensor('int32', Int32Array.from(v), [B, L]) : new ort.Tensor('int64', BigInt64Array.from(v, (x) => BigInt(x)), [B, L]);
    const feeds: Record<string, InstanceType<Ort['Tensor']>> = {};
    for (const name of inputs) {
      if (name === 'input_ids') feeds[name] = tensor(name, ids);
      else if (name === 'attention_mask') feeds[name] = tensor(name, mask);
      else if (name === 'token_type_ids') feeds[name] = tensor(name, types);
      else feeds[name] = tensor(name, Array.from({ length: B * L }, (_, i) => i % L));
    }
    return { feeds, mask, B, L };
  };

  const runBatch = async (encs: Encoded[], rows: number[], out: Float32Array, timing: EmbedTiming | undefined): Promise<void> => {
    const { feeds, mask, B, L } = feedsFor(encs);
    const t0 = performance.now();
    let res;
    try {
      res = await sess.run(feeds, [outName]);
    } catch (e) {
      throw new SemDedupError('ERR_NATIVE', `${layout.onnx}: onnxruntime failed on a batch of ${B} × ${L} tokens: ${(e as Error).message}`, { file: layout.onnx });
    }
    const t1 = performance.now();
    const o = res[outName]!;
    let data: Float32Array;
    if (o.type === 'float32') data = o.data as Float32Array;
    else if (o.type === 'float16') data = halfToFloat(o.data as Uint16Array);
    else throw new InputError(`${layout.onnx}: output '${outName}' is ${o.type}; expected float32 or float16`, { file: layout.onnx });
    const dims = o.dims;
    if (dims.length === 3) {
      if (layout.pooling === 'model')
        throw new InputError(`${join(layout.dir, '1_Pooling', 'config.json')} not found: the model gives token embeddings ('${outName}') and the pooling config says how to pool them`, { file: join(layout.dir, '1_Pooling', 'config.json'), key: 'model' });
      poolInto(data, mask, B, L, dims[2]!, layout.pooling, layout.normalize, out, rows);
    } else if (dims.length === 2) {
      copyPooledInto(data, B, dims[1]!, layout.normalize, out, rows);
    } else throw new InputError(`${layout.onnx}: output '${outName}' has shape [${dims.join(', ')}]; expected [batch, tokens, hidden] or [batch, dim]`, { file: layout.onnx });
    if (timing) {
      timing.infer += (t1 - t0) / 1000;
      timing.pool += (performance.now() - t1) / 1000;
    }
  };

  const withTypes = inputs.includes('token_type_ids');
  /** Token ids and type ids of each text, in chunks (the library's encodings are dropped as soon as read). */
  const tokenize = async (texts: readonly string[]): Promise<Encoded[]> => {
    const out: Encoded[] = [];
    for (let i = 0; i < texts.length; i += TOKENIZE_CHUNK) {
      const prepared = texts.slice(i, i + TOKENIZE_CHUNK).map((t) => {
        const s = layout.prompt + t;
        return layout.lowercase ? s.toLowerCase() : s;
      });
      for (const e of await tok.encodeBatch(prepared)) {
        const ids = Int32Array.from(e.getIds());
        out.push({ ids, types: withTypes ? Uint8Array.from(e.getTypeIds()) : new Uint8Array(ids.length) });
      }
    }
    return out;
  };

  const embed = async (texts: readonly string[], call: EmbedCallOptions = {}): Promise<Float32Array> => {
    if (call.signal?.aborted) throw new SemDedupError('ERR_CANCELLED', 'cancelled');
    const out = new Float32Array(texts.length * dim);
    if (texts.length === 0) return out;
    const t0 = performance.now();
    const encs = await tokenize(texts);
    if (call.timing) call.timing.tokenize += (performance.now() - t0) / 1000;
    encs.forEach((e, i) => {
      if (e.ids.length === 0)
        throw new InputError(`text ${i} gives no tokens (an empty text, and the tokenizer adds no special tokens): nothing to embed`, { key: 'text' });
    });
    // Rows sorted by length (stable), then batches of at most batchTokens padded tokens.
    const order = Array.from(encs.keys()).sort((a, b) => encs[a]!.ids.length - encs[b]!.ids.length || a - b);
    const budget = Math.max(call.batchTokens ?? DEFAULT_BATCH_TOKENS, layout.maxSeqLength);
    let done = 0;
    for (let i = 0; i < order.length; ) {
      let j = i + 1;
      while (j < order.length && (j - i + 1) * encs[order[j]!]!.ids.length <= budget) j++;
      const rows = order.slice(i, j);
      if (call.signal?.aborted) throw new SemDedupError('ERR_CANCELLED', 'cancelled');
      await runBatch(rows.map((r) => encs[r]!), rows, out, call.timing);
      done += rows.length;
      call.onBatch?.(done);
      i = j;
    }
    return out;
  };

  // One empty text: checks the model end to end and gives the dimension.
  {
    const probe = await tokenize(['']);
    if (probe[0]!.ids.length === 0) probe[0] = { ids: Int32Array.of(padId), types: Uint8Array.of(0) };
    let o;
    try {
      o = await sess.run(feedsFor(probe).feeds, [outName]);
    } catch (e) {
      throw new InputError(`${layout.onnx}: onnxruntime cannot run the model on one text: ${(e as Error).message}`, { file: layout.onnx });
    }
    const dims = o[outName]!.dims;
    if (dims.length !== 2 && dims.length !== 3)
      throw new InputError(`${layout.onnx}: output '${outName}' has shape [${dims.join(', ')}]; expected [batch, tokens, hidden] or [batch, dim]`, { file: layout.onnx });
    if (dims.length === 3 && layout.pooling === 'model')
      throw new InputError(`${join(layout.dir, '1_Pooling', 'config.json')} not found: the model gives token embeddings ('${outName}') and the pooling config says how to pool them`, { file: join(layout.dir, '1_Pooling', 'config.json'), key: 'model' });
    const hidden = dims[dims.length - 1]!;
    dim = dims.length === 3 ? hidden * (layout.pooling as PoolingMode[]).length : hidden;
  }

  return {
    dir: layout.dir,
    dim,
    maxSeqLength: layout.maxSeqLength,
    pooling: layout.pooling,
    normalize: layout.normalize,
    device: ran,
    fingerprint: fingerprintOf(layout),
    embed,
    close: async () => {
      await sess.release();
    },
  };
}
