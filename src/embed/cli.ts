// `semdedup embed`: texts → embeddings shards and ids, with a local ONNX model.
import { Command, Option } from 'commander';
import { basename, dirname, join, relative } from 'node:path';
import { ConfigError } from '../errors.js';
import { interruptSignal, shellWord } from '../cli-common.js';
import type { EmbedProgress } from './run.js';

interface EmbedCliOptions {
  model: string;
  input: string;
  output: string;
  format?: 'auto' | 'jsonl' | 'text' | 'parquet';
  textField?: string;
  idField?: string;
  dtype?: 'float16' | 'float32';
  shardRows?: string;
  batchTokens?: string;
  maxSeqLength?: string;
  normalize?: 'model' | 'always' | 'never';
  device?: 'auto' | 'cpu' | 'cuda';
  threads?: string;
  quiet?: boolean;
  json?: boolean;
}

function posInt(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${flag} must be a positive integer, got '${v}'`, { key: flag });
  return n;
}


function progressLine(quiet: boolean | undefined): ((p: EmbedProgress) => void) | undefined {
  if (quiet) return undefined;
  const tty = process.stderr.isTTY;
  let last = 0;
  return (p) => {
    const t = Date.now();
    if (t - last < (tty ? 200 : 5000)) return;
    last = t;
    // The input read so far runs a shard ahead of the rows embedded: the bar shows the rows' share.
    const f = Math.min(1, p.fraction);
    const width = 24;
    const bar = '#'.repeat(Math.round(f * width)).padEnd(width, '.');
    const line = `  embed [${bar}] ${(100 * f).toFixed(1)}% read, ${p.done.toLocaleString('en-US')} rows (shard ${p.shard}), ${Math.round(p.rowsPerSecond).toLocaleString('en-US')} rows/s`;
    process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
  };
}

export function registerEmbedCommand(program: Command): void {
  program
    .command('embed')
    .description('step 1: embed texts (JSON Lines, Parquet or one text per line) with a local ONNX sentence-transformers model into .npy shards and ids that every other command reads')
    .requiredOption('--model <dir>', 'the model folder: model.onnx (or onnx/model.onnx), tokenizer.json, 1_Pooling/config.json, modules.json (nothing is downloaded)')
    .requiredOption('--input <file>', 'the texts: .jsonl (one object per line), .parquet, or a text file with one text per line')
    .requiredOption('-o, --output <dir>', 'output folder: embeddings/part-*.npy, ids/part-*.txt, embeddings.yaml')
    .addOption(new Option('--format <format>', 'input format (auto: by the Parquet magic bytes, else .jsonl/.ndjson/.json, else text)').choices(['auto', 'jsonl', 'text', 'parquet']))
    .option('--text-field <name>', 'JSON Lines / Parquet: the field of the text (default text)')
    .option('--id-field <name>', 'JSON Lines / Parquet: the field of the id, string or integer (default: the row number)')
    .addOption(new Option('--dtype <dtype>', 'element type of the shards (default float16)').choices(['float16', 'float32']))
    .option('--shard-rows <n>', 'rows per shard (default 65536); memory is bounded by one shard')
    .option('--batch-tokens <n>', 'padded tokens per inference batch (default 16384)')
    .option('--max-seq-length <n>', "tokens per text, special tokens included (default: the model's max_seq_length)")
    .addOption(new Option('--normalize <mode>', "L2-normalise: model (default: as the model's modules.json says), always, never").choices(['model', 'always', 'never']))
    .addOption(new Option('--device <device>', 'auto (default: CUDA when onnxruntime-node has its provider), cpu, cuda').choices(['auto', 'cpu', 'cuda']))
    .option('--threads <n>', 'CPU threads of the model (default: all cores)')
    .option('-q, --quiet', 'no progress or log lines')
    .option('--json', 'print the result as JSON')
    .action(async (o: EmbedCliOptions) => {
      // Ctrl-C: the shard under way stops, finished shards are kept (a rerun resumes), exit 130.
      const signal = interruptSignal(o.quiet);
      const onProgress = progressLine(o.quiet);
      const shardRows = posInt(o.shardRows, '--shard-rows');
      const batchTokens = posInt(o.batchTokens, '--batch-tokens');
      const maxSeqLength = posInt(o.maxSeqLength, '--max-seq-length');
      const threads = posInt(o.threads, '--threads');
      // The embedding modules (and the model runtime through them) load only for this command.
      const { embedFile } = await import('./run.js');
      const r = await embedFile({
        model: o.model,
        input: o.input,
        output: o.output,
        ...(o.format ? { format: o.format } : {}),
        ...(o.textField ? { textField: o.textField } : {}),
        ...(o.idField ? { idField: o.idField } : {}),
        ...(o.dtype ? { dtype: o.dtype } : {}),
        ...(shardRows ? { shardRows } : {}),
        ...(batchTokens ? { batchTokens } : {}),
        ...(maxSeqLength ? { maxSeqLength } : {}),
        ...(o.normalize ? { normalize: o.normalize } : {}),
        ...(o.device ? { device: o.device } : {}),
        ...(threads ? { threads } : {}),
        ...(o.quiet ? {} : { log: (l: string) => process.stderr.write(`semdedup: ${l}\n`) }),
        ...(onProgress ? { onProgress } : {}),
        signal,
      });
      if (onProgress && process.stderr.isTTY) process.stderr.write('\n');
      const s = r.seconds;
      const busy = s.read + s.tokenize + s.infer + s.pool + s.write;
      const pct = (x: number) => `${((100 * x) / Math.max(busy, 1e-9)).toFixed(0)}%`;
      const cfg = relative(process.cwd(), r.config) || r.config;
      const out = join(dirname(dirname(cfg)), `${basename(dirname(r.config))}-dedup`);
      // k left to the run's default from N (config key k).
      const next = `semdedup run ${shellWord(dirname(cfg))} -o ${shellWord(out)}`;
      const human =
        `embedded ${r.rows.toLocaleString('en-US')} rows × ${r.dim} (${r.dtype}) into ${r.shards} shard${r.shards === 1 ? '' : 's'}` +
        `${r.resumedShards ? ` (${r.resumedShards} finished shard${r.resumedShards === 1 ? '' : 's'} kept)` : ''} on ${r.device} in ${s.total.toFixed(1)} s, ` +
        `${Math.round(r.rowsPerSecond).toLocaleString('en-US')} rows/s (read ${pct(s.read)}, tokenise ${pct(s.tokenize)}, inference ${pct(s.infer)}, pooling ${pct(s.pool)}, write ${pct(s.write)})\n` +
        `embeddings: ${r.embeddings}/part-*.npy\nids: ${r.ids}/part-*.txt\nconfig: ${r.config}\n` +
        `next: ${next}`;
      if (o.json) process.stdout.write(JSON.stringify({ ...r, next }, null, 2) + '\n');
      else process.stdout.write(human + '\n');
    });
}
