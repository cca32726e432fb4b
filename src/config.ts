// The one configuration schema of the engine and its loader.
//
// Two file formats are read, and may be mixed:
//  - our own format: flat YAML with the snake_case canonical keys of `configSchema`;
//  - the original project's two files, `clustering_configs.yaml` and `semdedup_configs.yaml`,
//    unchanged: every original key name is an alias of one canonical key.
//
// YAML is parsed as YAML 1.1 (like PyYAML, which the original uses): `True`/`False` are
// booleans, and the literal `None` (as well as `null`, `~` and an empty value) means "not set".
//
// Relative paths: in a file written in our format, relative paths are resolved against the
// directory of that file. In a file that uses any of the original's own key names for a
// canonical key (an alias such as `emb_memory_loc` or `save_folder`), relative paths are
// resolved against the current working directory, as the original does (it hands them to np.memmap as they are). Paths given as
// overrides (command-line options) are resolved against the current working directory.

import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseYamlLikePyYAML } from './io/yaml11.js';
import { ConfigError } from './errors.js';
import { metricConflicts } from './decision.js';
import { outputs } from './layout.js';

/** Keep order by a metadata column (`rank_by`). */
export interface RankBy {
  column: string;
  order: 'asc' | 'desc';
}

/** The two config files of the original project. */
export type OriginalFile = 'clustering_configs.yaml' | 'semdedup_configs.yaml';

/** How a value is validated. */
export type ValueKind =
  | 'path' // non-empty string, resolved to an absolute path
  | 'string' // non-empty string, as it is
  | 'paths' // a path (a file, a folder or a glob) or a list of paths, each resolved to an absolute path
  | 'enum' // one of `values` (case-insensitive, stored lower-case)
  | 'posint' // integer >= 1
  | 'nonnegint' // integer >= 0
  | 'int' // any safe integer
  | 'bool'
  | 'epsList' // list of numbers in (0, 1), or a comma-separated string
  | 'strDtype' // numpy fixed-width string dtype such as S24 or U40
  | 'rankBy' // { column, order: asc | desc }, or the string `column:desc`
  | 'compat'; // accepted for compatibility with the original, not used

/** One row of the schema table. */
export interface ConfigKeySpec {
  /** Canonical key (our own format). */
  readonly key: string;
  /** Field of `SemDedupConfig` (the key in camelCase), or null for a key that is accepted and not used. */
  readonly field: string | null;
  /** The original's names for this key (other than the canonical one) and the file they are in. */
  readonly aliases: readonly { readonly name: string; readonly file: OriginalFile }[];
  /** Original files that use the canonical name itself. */
  readonly sameNameIn?: readonly OriginalFile[];
  readonly kind: ValueKind;
  /** Allowed values, for `enum`. */
  readonly values?: readonly string[];
  /** Default value; undefined when the key is optional without default or required. */
  readonly default?: unknown;
  /** The default as shown in the docs. */
  readonly defaultText: string;
  readonly description: string;
  /** The commands that take this key as an option `--<key with dashes>` (help: the description). */
  readonly cli?: readonly CliCommand[];
}

/** The commands of the CLI whose options come from the schema. */
export type CliCommand = 'cluster' | 'sort' | 'dedup' | 'extract' | 'run' | 'curve' | 'explain' | 'decontaminate' | 'report' | 'exact-duplicates';
const HEAVY: readonly CliCommand[] = ['cluster', 'sort', 'dedup', 'extract', 'run'];
/** The steps that take the input (the embeddings) and the output folder (`-o`). */
const STEPS: readonly CliCommand[] = ['cluster', 'sort', 'dedup', 'run'];
/** The commands that work from a finished run (they re-check in float64 or read the embeddings). */
const AFTER: readonly CliCommand[] = ['explain', 'decontaminate', 'report', 'exact-duplicates'];

/** Where the original uses each key: a shorthand for the table below. */
const CL: OriginalFile = 'clustering_configs.yaml';
const SD: OriginalFile = 'semdedup_configs.yaml';

/** Default `eps_list` (the original has no default: it takes `--eps-list` on its command line). */
export const DEFAULT_EPS_LIST: readonly number[] = Object.freeze([0.01, 0.05, 0.1]);

/**
 * The schema: one row per canonical key. The single source of truth for validation, defaults,
 * the types (`SemDedupConfig` is derived from it), the docs (`formatConfigDoc`) and the CLI's
 * options and their help (`cli`).
 */
export const configSchema = Object.freeze([
  {
    key: 'embeddings', field: 'embeddings', kind: 'paths',
    aliases: [{ name: 'emb_memory_loc', file: CL }, { name: 'embs_memory_loc', file: SD }],
    defaultText: 'required',
    description:
      'Embeddings: N rows × D columns, one row per example. One file, or shards read as one dataset in ' +
      'order: a list of files, a glob (`img_emb/img_emb_*.npy`, wildcards in the file name only) or a ' +
      'folder (its .npy files, else its files, sorted by name).',
    cli: STEPS,
  },
  {
    key: 'embeddings_format', field: 'embeddingsFormat', kind: 'enum', values: ['auto', 'memmap', 'npy', 'parquet'],
    aliases: [], default: 'auto', defaultText: 'auto',
    description:
      '`npy`: a .npy file (its header gives shape and dtype). `memmap`: raw rows without header, ' +
      'as the original writes them with np.memmap (needs `dim`). `parquet`: a list column of float or ' +
      'half-float (`embeddings_column`), converted once into the output folder. `auto`: npy when the file starts ' +
      'with the .npy magic bytes, parquet with the Parquet magic, raw memmap otherwise (whatever the file name).',
  },
  {
    key: 'embeddings_column', field: 'embeddingsColumn', kind: 'string', aliases: [], default: 'embedding', defaultText: 'embedding',
    description: "Parquet embeddings: the column of the vectors (NeMo Curator's name by default).",
  },
  {
    key: 'embeddings_dtype', field: 'embeddingsDtype', kind: 'enum', values: ['float32', 'float16'],
    aliases: [], default: 'float32', defaultText: 'float32',
    description: 'Element type of a raw memmap embeddings file; for .npy the header decides.',
  },
  {
    key: 'dataset_size', field: 'datasetSize', kind: 'posint', aliases: [], sameNameIn: [CL, SD],
    defaultText: 'from the file',
    description:
      'Number of rows N. Optional: taken from the .npy header, or from the file size divided by ' +
      'the row size for a raw memmap; when given, it must match.',
  },
  {
    key: 'dim', field: 'dim', kind: 'posint',
    aliases: [{ name: 'emb_size', file: CL }, { name: 'emd_size', file: SD }],
    defaultText: 'from the file',
    description: 'Embedding dimension D. Required for a raw memmap; checked against a .npy header.',
    cli: STEPS,
  },
  {
    key: 'ids', field: 'ids', kind: 'paths', aliases: [{ name: 'paths_memory_loc', file: CL }],
    defaultText: 'row numbers',
    description:
      'Ids ("paths"): N unique strings, one per row. One file, or one ids file per embeddings shard (a list, ' +
      'a glob or a folder, in the same order). Without it, ids are the row numbers.',
    cli: STEPS,
  },
  {
    key: 'ids_format', field: 'idsFormat', kind: 'enum', values: ['auto', 'memmap', 'npy', 'text', 'parquet'],
    aliases: [], default: 'auto', defaultText: 'auto',
    description:
      '`memmap`: raw fixed-width strings without header (dtype `ids_dtype`), as in the original. ' +
      '`npy`: a .npy string array. `text`: one id per line. `auto`: npy when the file starts with ' +
      'the .npy magic bytes, else memmap when `ids_dtype` is set, else text.',
  },
  {
    key: 'ids_column', field: 'idsColumn', kind: 'string', aliases: [], default: 'id', defaultText: 'id',
    description:
      "Parquet ids: the column of the ids (strings or integers; NeMo Curator's name by default). Parquet " +
      'embeddings with this column give the ids when `ids` is not set.',
  },
  {
    key: 'rank_by', field: 'rankBy', kind: 'rankBy', aliases: [], defaultText: 'none',
    cli: ['dedup', 'run'],
    description:
      'Keep order by a metadata column: `{column: quality_score, order: desc}` (option: `quality_score:desc`). ' +
      "Each cluster's members are ordered by that column (ties: the distance order, then the row), so the " +
      'first, best member of every group of duplicates is the one kept. The column is read from the Parquet ids ' +
      'files, else from the Parquet embeddings.',
  },
  {
    key: 'ids_dtype', field: 'idsDtype', kind: 'strDtype', aliases: [{ name: 'path_str_dtype', file: CL }],
    defaultText: 'none',
    description: 'numpy dtype of a raw memmap ids file: `S<n>` (n bytes, NUL-padded) or `U<n>` (n UTF-32 characters).',
  },
  {
    key: 'text_emb_memory_loc', field: null, kind: 'compat', aliases: [], sameNameIn: [CL],
    defaultText: 'none',
    description: 'Accepted for compatibility with the original clustering_configs.yaml (usually `None`); not used.',
  },
  {
    key: 'output_dir', field: 'outputDir', kind: 'path', aliases: [{ name: 'save_folder', file: CL }, { name: 'save_folder', file: SD }],
    defaultText: 'required',
    description: 'Folder for all outputs (centroids, assignments, per-cluster tables, id lists, manifest).',
    cli: STEPS,
  },
  {
    key: 'sorted_clusters_dir', field: 'sortedClustersDir', kind: 'path',
    aliases: [{ name: 'sorted_clusters_file_loc', file: CL }, { name: 'sorted_clusters_path', file: SD }],
    defaultText: '<output_dir>/sorted_clusters',
    description: 'Folder for the sorted clusters.',
  },
  {
    key: 'export_sorted_clusters', field: 'exportSortedClusters', kind: 'bool', aliases: [], default: false,
    defaultText: 'false',
    description: "Also write `sorted_clusters_dir/cluster_{c}.npy` in the original's format (n × 4 unicode array).",
    cli: ['sort', 'run'],
  },
  {
    key: 'k', field: 'k', kind: 'posint',
    aliases: [{ name: 'ncentroids', file: CL }, { name: 'num_clusters', file: SD }],
    defaultText: 'required',
    description: 'Number of k-means clusters.',
    cli: ['cluster', 'run'],
  },
  {
    key: 'niter', field: 'niter', kind: 'posint', aliases: [], sameNameIn: [CL], default: 20, defaultText: '20',
    description: 'k-means iterations.',
    cli: ['cluster', 'run'],
  },
  {
    key: 'seed', field: 'seed', kind: 'int', aliases: [], sameNameIn: [CL, SD], default: 1234, defaultText: '1234',
    description: 'Seed of k-means (sampling and initialisation) and of `which_to_keep: random`.',
    cli: ['cluster', 'dedup', 'run'],
  },
  {
    key: 'spherical', field: 'spherical', kind: 'bool', aliases: [{ name: 'Kmeans_with_cos_dist', file: CL }],
    default: false, defaultText: 'false',
    description: 'Spherical k-means: centroids re-normalised after each iteration, assignment by inner product.',
    cli: ['cluster', 'run'],
  },
  {
    key: 'max_points_per_centroid', field: 'maxPointsPerCentroid', kind: 'posint', aliases: [], default: 256,
    defaultText: '256',
    description: 'k-means trains on a seeded sample of at most this many points per centroid (FAISS default).',
  },
  {
    key: 'min_points_per_centroid', field: 'minPointsPerCentroid', kind: 'nonnegint', aliases: [], default: 39,
    defaultText: '39',
    description: 'Warn when there are fewer training points than this many per centroid (FAISS default).',
  },
  {
    key: 'centroids', field: 'centroids', kind: 'path', aliases: [], defaultText: 'none',
    description: 'A k × D .npy of given centroids: skips k-means training, rows are only assigned.',
    cli: ['cluster', 'run'],
  },
  {
    key: 'sim_metric', field: 'simMetric', kind: 'enum', values: ['cosine', 'l2'], aliases: [], sameNameIn: [CL],
    default: 'cosine', defaultText: 'cosine',
    description:
      'Distance used to rank cluster members: `cosine` (1 − cosine to the centroid) or `l2` ' +
      '(squared L2 distance; not allowed with `spherical`).',
  },
  {
    key: 'keep_hard', field: 'keepHard', kind: 'bool', aliases: [], sameNameIn: [CL], default: true, defaultText: 'true',
    description: 'Sort cluster members by distance descending (hardest first); false sorts ascending.',
  },
  {
    key: 'which_to_keep', field: 'whichToKeep', kind: 'enum', values: ['hard', 'easy', 'random'], aliases: [],
    sameNameIn: [SD], default: 'hard', defaultText: 'hard',
    description: 'Which member of a group of duplicates is kept: `hard` keeps the sorted order, `easy` reverses it, `random` shuffles it (seeded).',
    cli: ['dedup', 'run'],
  },
  {
    key: 'eps_list', field: 'epsList', kind: 'epsList', aliases: [], default: DEFAULT_EPS_LIST,
    defaultText: DEFAULT_EPS_LIST.join(', '),
    description:
      'Thresholds: a member is removed when its largest similarity to an earlier member is > 1 − eps. ' +
      'A list of numbers strictly between 0 and 1, or a comma-separated string such as "0.01,0.05".',
    cli: ['dedup', 'run'],
  },
  {
    key: 'kept_order', field: 'keptOrder', kind: 'enum', values: ['cluster', 'input'], aliases: [], default: 'cluster',
    defaultText: 'cluster',
    description:
      'Order of the ids in the kept (or removed) id lists: `cluster` walks clusters 0..k-1 and each in keep order, as the original; ' +
      '`input` lists them in the order of the input rows. The kept_rows files keep the cluster order. (Option: `--order`.)',
  },
  {
    key: 'kept_file_format', field: 'keptFileFormat', kind: 'enum', values: ['auto', 'posix', 'original'], aliases: [], default: 'auto',
    defaultText: 'auto',
    description:
      'Bytes of the id lists: `posix`: a text file, every id followed by a newline; `original`: the ids joined by newlines with ' +
      "no final one, byte for byte the original's files; `auto`: `original` when a config file is in the original's format, else `posix`.",
    cli: ['extract', 'run'],
  },
  {
    key: 'largest_cluster_size_to_process', field: 'largestClusterSizeToProcess', kind: 'posint', aliases: [],
    sameNameIn: [SD], defaultText: 'none',
    description: 'Accepted for compatibility; not needed, since memory is bounded by tiling whatever the cluster size.',
  },
  {
    key: 'normalize', field: 'normalize', kind: 'enum', values: ['auto', 'always', 'never'], aliases: [],
    default: 'auto', defaultText: 'auto',
    description:
      '`auto`: rows are checked, and a row whose L2 norm differs from 1 by more than 1e-3 is an error. ' +
      '`always`: every row is L2-normalised on read, into a float32 copy (a zero row is still an error). ' +
      '`never`: rows are used as they are, unchecked.',
    cli: [...HEAVY, ...AFTER],
  },
  {
    key: 'device', field: 'device', kind: 'enum', values: ['auto', 'cpu', 'cuda'], aliases: [], default: 'auto',
    defaultText: 'auto',
    description: 'Backend of each heavy job. `auto`: the GPU when it can, else the CPU (the log says why). `cuda`: the GPU, or an error giving the reason. `cpu`: the CPU.',
    cli: HEAVY,
  },
  {
    key: 'kmeans_impl', field: 'kmeansImpl', kind: 'enum', values: ['engine', 'faiss'], aliases: [], default: 'engine',
    defaultText: 'engine',
    description:
      "k-means on the CPU: `engine` runs FAISS's sampling and initialisation with every assignment the exact nearest centroid, on the engine's blocked kernels with exact pruning (the same bytes on every machine); `faiss` trains with faiss::Clustering itself (its centroids depend on the BLAS kernel and thread count; rows are then assigned by the exact rule).",
  },
  {
    key: 'gpu_memory_limit', field: 'gpuMemoryLimit', kind: 'nonnegint', aliases: [], default: 0, defaultText: '0',
    description: 'Device bytes a GPU job may use; 0 uses 85% of the free memory. Jobs that do not fit are streamed in batches or, under `device: auto`, run on the CPU.',
    cli: ['cluster', 'dedup', 'run'],
  },
  {
    key: 'kmeans_prune', field: 'kmeansPrune', kind: 'bool', aliases: [], default: true, defaultText: 'true',
    description:
      "Engine k-means: skip the search of rows whose bounds prove that their centroid cannot change (the result is the same; false searches every row).",
  },
  {
    key: 'reuse_centroids', field: 'reuseCentroids', kind: 'bool', aliases: [], default: true, defaultText: 'true',
    description: "Reuse `kmeans_centroids.npy` found in the output folder instead of training again (as the original resumes).",
  },
  {
    key: 'exact_duplicates', field: 'exactDuplicates', kind: 'bool', aliases: [], default: false, defaultText: 'false',
    description:
      'Before step 4, find rows whose bytes are identical (hash, then byte compare), keep the first in keep order and report them (semdedup/exact_duplicates.npy); no decision changes.',
    cli: ['dedup', 'run'],
  },
  {
    key: 'threads', field: 'threads', kind: 'nonnegint', aliases: [], default: 0, defaultText: '0',
    description: 'CPU threads; 0 uses all cores.',
    cli: [...HEAVY, ...AFTER],
  },
] as const satisfies readonly ConfigKeySpec[]);

type SchemaRow = (typeof configSchema)[number];
/** Canonical (snake_case) config keys. */
export type CanonicalKey = SchemaRow['key'];
type ValueOf<R> = R extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
  ? V
  : R extends { readonly kind: 'path' | 'strDtype' | 'compat' }
    ? string
    : R extends { readonly kind: 'paths' }
    ? string | string[]
    : R extends { readonly kind: 'string' }
    ? string
    : R extends { readonly kind: 'rankBy' }
    ? RankBy
    : R extends { readonly kind: 'bool' }
      ? boolean
      : R extends { readonly kind: 'epsList' }
        ? number[]
        : number;
type FieldRow = Extract<SchemaRow, { readonly field: string }>;
type Defaulted = Extract<FieldRow, { readonly default: unknown }>;
type Optional = Exclude<FieldRow, Defaulted>;

/**
 * The typed configuration, derived from the schema: a key with a default is always present, the
 * others are optional (paths are absolute). `sources` says where each value came from, by
 * canonical key: a file label, 'option' or 'default'.
 */
export type PartialConfig = { [R in Defaulted as R['field']]: ValueOf<R> } & { [R in Optional as R['field']]?: ValueOf<R> } & {
  sources: Record<string, string>;
};

/** Some fields of the config, each optional: the step options that the schema describes and defaults. */
export type ConfigFields<K extends keyof PartialConfig> = Partial<Pick<PartialConfig, K>>;

/** Fields that are absent until some file or option sets them. */
type LateFields = 'embeddings' | 'outputDir' | 'k' | 'sortedClustersDir';

/** The configuration of a whole run: the late fields are set too. */
export type SemDedupConfig = PartialConfig & { [F in LateFields]-?: NonNullable<PartialConfig[F]> };

/** The schema's defaults as a typed object (camelCase fields): what `withDefaults` fills in. */
export type Defaults = { [R in Defaulted as R['field']]: ValueOf<R> };

/**
 * Fills every field that `opts` leaves undefined with the schema's default, so that the steps
 * take resolved parameters and no default lives anywhere else.
 */
export function withDefaults<T extends object>(opts: T): T & Defaults {
  const out: Record<string, unknown> = { ...(opts as Record<string, unknown>) };
  for (const spec of configSchema as readonly ConfigKeySpec[]) {
    if (spec.field === null || !('default' in spec) || spec.default === undefined) continue;
    if (out[spec.field] === undefined) out[spec.field] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
  }
  return out as T & Defaults;
}

/** The result of loading: a partial config plus the files it was read from (in order, as given). */
export type PartialResolved = PartialConfig & { files: string[] };

/** snake_case → camelCase at the type level. */
type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;

/** The config type after `requireKeys(cfg, keys)`: those fields are present. */
export type WithKeys<C, K extends CanonicalKey> = C & {
  [F in Camel<K> & keyof PartialConfig]-?: NonNullable<PartialConfig[F]>;
};

/** Options of the loaders. */
export interface LoadOptions {
  /** Working directory for relative paths of original-format files and of overrides (default: process.cwd()). */
  cwd?: string;
  /** How to name an override in messages, by its key (e.g. eps_list: '--eps-list'); default '<options>'. */
  overrideLabels?: Record<string, string>;
}

/** Options of `parseConfigObject`. */
export interface ParseObjectOptions extends LoadOptions {
  /** Folder against which relative paths resolve when the object is in our own format (default: cwd). */
  baseDir?: string;
  /** Accept strings for numbers and booleans ("100", "true"), as command-line options give them. */
  coerceStrings?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Lookup tables

const SCHEMA: readonly ConfigKeySpec[] = configSchema;
const SPEC_BY_KEY = new Map<string, ConfigKeySpec>(SCHEMA.map((s) => [s.key, s]));
/** Every accepted name in a file (canonical keys and the original's aliases) → its spec. */
const SPEC_BY_NAME = new Map<string, ConfigKeySpec>();
/** Names that mark a file as written in the original's format. */
const ORIGINAL_MARKERS = new Set<string>();
for (const s of SCHEMA) {
  SPEC_BY_NAME.set(s.key, s);
  for (const a of s.aliases) {
    SPEC_BY_NAME.set(a.name, s);
    ORIGINAL_MARKERS.add(a.name);
  }
}
/** camelCase field names, accepted in overrides and programmatic objects with `coerceStrings`. */
const SPEC_BY_FIELD = new Map<string, ConfigKeySpec>();
for (const s of SCHEMA) if (s.field !== null && s.field !== s.key) SPEC_BY_FIELD.set(s.field, s);

const ALL_NAMES: string[] = [...SPEC_BY_NAME.keys()];

// ---------------------------------------------------------------------------------------------
// Small helpers

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let i = 0; i <= m; i++) d[i]![0] = i;
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

/** The nearest valid key name to `name`, when it is close enough to be a likely typo. */
export function suggestKey(name: string): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestD = Infinity;
  for (const cand of ALL_NAMES) {
    const dist = editDistance(lower, cand.toLowerCase());
    if (dist < bestD) {
      bestD = dist;
      best = cand;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'object') return 'mapping';
  return typeof v;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v === null) return 'null';
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

function got(v: unknown): string {
  return `got ${show(v)} (${typeName(v)})`;
}

/** YAML 1.1 / Python spellings of "no value". */
function isNullish(v: unknown): boolean {
  return v === null || v === undefined || (typeof v === 'string' && /^(none|null|~)$/i.test(v.trim()));
}

// A template placeholder left in a value (the original's templates hold `<your path>`,
// `<dataset_size>`): a `<...>` that starts the value, or one with a space inside anywhere. A folder
// or file name that merely holds angle brackets (`run_<b>`) is a name like any other.
const PLACEHOLDER = /^\s*<[^<>\n]*>|<[^<>\n]* [^<>\n]*>/;

function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  return Object.is(a, b) || a === b;
}

// ---------------------------------------------------------------------------------------------
// Value validation

interface Ctx {
  file: string;
  /** The name as written (canonical or alias). */
  name: string;
  coerce: boolean;
  baseDir: string;
}

function fail(ctx: Ctx, spec: ConfigKeySpec, message: string): never {
  throw new ConfigError(`${ctx.file}: key '${ctx.name}' ${message}`, { file: ctx.file, key: spec.key });
}

function toInt(v: unknown, ctx: Ctx): unknown {
  if (ctx.coerce && typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) return Number(v);
  if (typeof v === 'bigint') return Number(v);
  return v;
}

function parseEps(v: unknown, ctx: Ctx, spec: ConfigKeySpec): number[] {
  let items: unknown[];
  if (typeof v === 'string') {
    items = v.split(',').map((s) => s.trim());
    if (items.length > 0 && items[items.length - 1] === '') items.pop(); // trailing comma
    items = items.map((s) => {
      const str = s as string;
      return str !== '' && Number.isFinite(Number(str)) ? Number(str) : str;
    });
  } else if (typeof v === 'number') {
    items = [v];
  } else if (Array.isArray(v)) {
    items = v;
  } else {
    fail(ctx, spec, `must be a list of numbers strictly between 0 and 1 (or a comma-separated string), ${got(v)}`);
  }
  if (items.length === 0) fail(ctx, spec, 'must hold at least one eps value');
  const out: number[] = [];
  const raw = typeof v === 'string' ? v.split(',').map((t) => t.trim()) : undefined;
  items.forEach((x, i) => {
    let n = x;
    if (ctx.coerce && typeof n === 'string' && n.trim() !== '' && Number.isFinite(Number(n))) n = Number(n);
    if (typeof n !== 'number' || !Number.isFinite(n) || !(n > 0 && n < 1)) {
      const where = items.length > 1 || Array.isArray(v) ? ` at position ${i + 1}` : '';
      // An option's comma-separated text is quoted as typed.
      const as = ctx.coerce && raw?.[i] !== undefined ? `got '${raw[i]}'` : got(x);
      fail(ctx, spec, `must hold numbers strictly between 0 and 1, ${as}${where}`);
    }
    if (out.includes(n)) fail(ctx, spec, `lists eps ${n} twice`);
    out.push(n);
  });
  return out;
}

/** Validates and converts one value; returns the canonical value. */
function convert(v: unknown, spec: ConfigKeySpec, ctx: Ctx): unknown {
  if (typeof v === 'string') {
    const m = PLACEHOLDER.exec(v);
    if (m) {
      fail(ctx, spec, `still holds the template placeholder '${m[0]}'; replace it with a real value`);
    }
  }
  switch (spec.kind) {
    case 'path': {
      if (typeof v !== 'string' || v.trim() === '') fail(ctx, spec, `must be a path (a non-empty string), ${got(v)}`);
      return path.resolve(ctx.baseDir, v);
    }
    case 'paths': {
      if (Array.isArray(v)) {
        if (v.length === 0) fail(ctx, spec, `must be a path or a non-empty list of paths, ${got(v)}`);
        return v.map((p, i) => {
          if (typeof p !== 'string' || p.trim() === '') fail(ctx, spec, `item ${i + 1} must be a path (a non-empty string), ${got(p)}`);
          return path.resolve(ctx.baseDir, p);
        });
      }
      if (typeof v !== 'string' || v.trim() === '') fail(ctx, spec, `must be a path (a file, a folder or a glob) or a list of paths, ${got(v)}`);
      return path.resolve(ctx.baseDir, v);
    }
    case 'enum': {
      const values = spec.values ?? [];
      if (typeof v === 'string') {
        const lower = v.trim().toLowerCase();
        if (values.includes(lower)) return lower;
      }
      fail(ctx, spec, `must be one of ${values.map((x) => `'${x}'`).join(', ')}, ${got(v)}`);
    }
    case 'posint':
    case 'nonnegint':
    case 'int': {
      const n = toInt(v, ctx);
      const min = spec.kind === 'posint' ? 1 : spec.kind === 'nonnegint' ? 0 : -Infinity;
      const what =
        spec.kind === 'posint' ? 'a positive integer' : spec.kind === 'nonnegint' ? 'a non-negative integer' : 'an integer';
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) fail(ctx, spec, `must be ${what}, ${got(v)}`);
      return n;
    }
    case 'bool': {
      if (typeof v === 'boolean') return v;
      if (ctx.coerce && typeof v === 'string') {
        const s = v.trim().toLowerCase();
        if (['true', 'yes', 'on', '1'].includes(s)) return true;
        if (['false', 'no', 'off', '0'].includes(s)) return false;
      }
      fail(ctx, spec, `must be a boolean (true or false), ${got(v)}`);
    }
    case 'epsList':
      return parseEps(v, ctx, spec);
    case 'strDtype': {
      if (typeof v !== 'string' || !/^[<>|=]?[SU][1-9][0-9]*$/.test(v.trim())) {
        fail(ctx, spec, `must be a numpy fixed-width string dtype such as 'S24' or 'U40', ${got(v)}`);
      }
      return v.trim();
    }
    case 'compat': {
      if (typeof v !== 'string') fail(ctx, spec, `must be a path or None, ${got(v)}`);
      return v;
    }
    case 'string': {
      if (typeof v !== 'string' || v === '') fail(ctx, spec, `must be a non-empty string, ${got(v)}`);
      return v;
    }
    case 'rankBy': {
      let column: unknown;
      let order: unknown = 'desc';
      if (typeof v === 'string') {
        const i = v.lastIndexOf(':');
        const o = i >= 0 ? v.slice(i + 1).trim().toLowerCase() : '';
        if (o === 'asc' || o === 'desc') [column, order] = [v.slice(0, i), o];
        else column = v;
      } else if (v && typeof v === 'object' && !Array.isArray(v)) {
        const m = v as Record<string, unknown>;
        const extra = Object.keys(m).filter((k) => k !== 'column' && k !== 'order');
        if (extra.length) fail(ctx, spec, `takes the keys column and order, not ${extra.join(', ')}`);
        column = m.column;
        if (m.order !== undefined) order = typeof m.order === 'string' ? m.order.toLowerCase() : m.order;
      } else fail(ctx, spec, `must be {column: NAME, order: asc|desc} or NAME:desc, ${got(v)}`);
      if (typeof column !== 'string' || column === '') fail(ctx, spec, `needs a column name, ${got(v)}`);
      if (order !== 'asc' && order !== 'desc') fail(ctx, spec, `order must be asc or desc, ${got(order)}`);
      return { column, order } as RankBy;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing one source

interface Entry {
  value: unknown;
  /** Label of the source: a file as given, or 'option'. */
  source: string;
  /** The key name as written. */
  name: string;
}

type Entries = Map<string, Entry>;

function parseSource(
  obj: unknown,
  file: string,
  opts: { baseDir: string; cwd: string; coerce: boolean; acceptFields: boolean; source: string },
): Entries {
  if (obj === null || obj === undefined) return new Map(); // empty file
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    throw new ConfigError(`${file}: the top level must be a mapping of keys to values, got a ${typeName(obj)}`, { file });
  }
  const rec = obj as Record<string, unknown>;
  const names = Object.keys(rec);
  // Resolve names first, so that an unknown key is reported before anything else.
  const resolved: { name: string; spec: ConfigKeySpec }[] = [];
  for (const name of names) {
    const spec = SPEC_BY_NAME.get(name) ?? (opts.acceptFields ? SPEC_BY_FIELD.get(name) : undefined);
    if (!spec) {
      const s = suggestKey(name);
      throw new ConfigError(`${file}: unknown key '${name}'.${s !== undefined ? ` Did you mean '${s}'?` : ''}`, {
        file,
        key: name,
      });
    }
    resolved.push({ name, spec });
  }
  // Template placeholders left in the original's files: report all of them at once.
  const holders: { name: string; key: string; ph: string }[] = [];
  for (const { name, spec } of resolved) {
    const raw = rec[name];
    const m = typeof raw === 'string' ? PLACEHOLDER.exec(raw) : null;
    if (m) holders.push({ name, key: spec.key, ph: m[0] });
  }
  if (holders.length > 0) {
    const [first, ...rest] = holders as [(typeof holders)[number], ...typeof holders];
    const more = rest.length
      ? ` (and so ${rest.length === 1 ? 'does' : 'do'} ${rest.map((h) => `'${h.name}' ('${h.ph}')`).join(', ')})`
      : '';
    throw new ConfigError(
      `${file}: key '${first.name}' still holds the template placeholder '${first.ph}'${more}; ` +
        `replace ${rest.length ? 'them' : 'it'} with real values`,
      { file, key: first.key },
    );
  }
  const original = names.some((n) => ORIGINAL_MARKERS.has(n));
  const baseDir = original ? opts.cwd : opts.baseDir;
  const out: Entries = new Map();
  for (const { name, spec } of resolved) {
    const raw = rec[name];
    if (isNullish(raw)) continue; // None / null / ~ / empty: not set
    const ctx: Ctx = { file, name, coerce: opts.coerce, baseDir };
    const value = convert(raw, spec, ctx);
    const prev = out.get(spec.key);
    if (prev && !sameValue(prev.value, value)) {
      throw new ConfigError(
        `${file}: keys '${prev.name}' and '${name}' both set '${spec.key}', to different values ` +
          `(${show(prev.value)} and ${show(value)})`,
        { file, key: spec.key },
      );
    }
    out.set(spec.key, { value, source: opts.source, name });
  }
  return out;
}

/** Merges `next` into `acc`; the same key with different values from two files is an error. */
function mergeStrict(acc: Entries, next: Entries): void {
  for (const [key, e] of next) {
    const prev = acc.get(key);
    if (prev && !sameValue(prev.value, e.value)) {
      throw new ConfigError(
        `conflicting values for '${key}': ${prev.name}: ${show(prev.value)} in ${prev.source}, ` +
          `but ${e.name}: ${show(e.value)} in ${e.source}`,
        { file: e.source, key },
      );
    }
    if (!prev) acc.set(key, e);
  }
}

/** Applies defaults and cross-key rules, and builds the typed config. */
function build(entries: Entries, files: string[]): PartialResolved {
  const cfg: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const spec of SCHEMA) {
    if (spec.field === null) {
      const e = entries.get(spec.key);
      if (e) sources[spec.key] = e.source;
      continue;
    }
    const e = entries.get(spec.key);
    if (e) {
      cfg[spec.field] = Array.isArray(e.value) ? [...e.value] : e.value;
      sources[spec.key] = e.source;
    } else if (spec.default !== undefined) {
      cfg[spec.field] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
      sources[spec.key] = 'default';
    }
  }
  // The id lists of a run configured in the original's format are the original's bytes.
  if (cfg.keptFileFormat === 'auto')
    cfg.keptFileFormat = [...entries.values()].some((e) => ORIGINAL_MARKERS.has(e.name) && e.source !== 'option') ? 'original' : 'posix';
  if (cfg.sortedClustersDir === undefined && typeof cfg.outputDir === 'string') {
    cfg.sortedClustersDir = outputs.sortedClusters(cfg.outputDir);
    sources.sorted_clusters_dir = 'default';
  }
  // Cross-key rules.
  if (metricConflicts(cfg.simMetric, cfg.spherical)) {
    const sm = entries.get('sim_metric');
    const sp = entries.get('spherical');
    const where = (e: Entry | undefined, key: string) => (e ? `${e.name} in ${e.source}` : `${key} (default)`);
    throw new ConfigError(
      `sim_metric 'l2' (${where(sm, 'sim_metric')}) cannot be combined with spherical k-means ` +
        `(${where(sp, 'spherical')}): spherical k-means assigns by inner product, so use sim_metric 'cosine' ` +
        `or turn spherical off`,
      { file: sm?.source ?? sp?.source, key: 'sim_metric' },
    );
  }
  cfg.sources = sources;
  cfg.files = [...files];
  return cfg as unknown as PartialResolved;
}

/** Reads a YAML file as the original's PyYAML reads it (src/io/yaml11.ts). */
function readYamlFile(file: string): unknown {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`config file not found: ${file}`, { file });
    if (code === 'EISDIR') throw new ConfigError(`config file is a directory, not a file: ${file}`, { file });
    throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`, { file });
  }
  try {
    return parseYamlLikePyYAML(bytes);
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0] ?? String(err);
    throw new ConfigError(`${file}: invalid YAML: ${msg}`, { file });
  }
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Reads and merges config files, then applies `overrides` (command-line options), then defaults.
 *
 * - Files may be in our format or the original's; a canonical key set to different values in two
 *   files (under any of its names) is an error naming both files; equal values are fine.
 * - Overrides win over files without a conflict check. Their keys may be canonical keys, the
 *   original's names or camelCase field names; `undefined` values are ignored; strings are
 *   accepted for numbers and booleans. Relative paths in overrides resolve against the cwd.
 * - Relative paths in an our-format file resolve against the file's directory; in an
 *   original-format file, against the cwd.
 *
 * @throws ConfigError for a missing/unreadable file, invalid YAML, a top level that is not a
 *   mapping, unknown keys, wrong types or values, template placeholders and conflicts.
 */
export function loadConfigFiles(
  files: string[],
  overrides?: Record<string, unknown>,
  opts: LoadOptions = {},
): PartialResolved {
  const cwd = opts.cwd ?? process.cwd();
  const acc: Entries = new Map();
  for (const file of files) {
    const obj = readYamlFile(file);
    const entries = parseSource(obj, file, {
      baseDir: path.dirname(path.resolve(cwd, file)),
      cwd,
      coerce: false,
      acceptFields: false,
      source: file,
    });
    mergeStrict(acc, entries);
  }
  if (overrides) {
    // Grouped by label, so that a bad value is reported under the name it was given by.
    const byLabel = new Map<string, Record<string, unknown>>();
    for (const [k, v] of Object.entries(overrides)) {
      if (v === undefined) continue;
      const label = opts.overrideLabels?.[k] ?? '<options>';
      byLabel.set(label, { ...(byLabel.get(label) ?? {}), [k]: v });
    }
    for (const [label, defined] of byLabel) {
      const entries = parseSource(defined, label, { baseDir: cwd, cwd, coerce: true, acceptFields: true, source: 'option' });
      for (const [k, e] of entries) acc.set(k, e);
    }
  }
  return build(acc, files);
}

/**
 * Validates a config given as an object (our format, the original's names, or a mix), with the
 * same rules as a file. `file` labels the source in messages and `sources` (e.g. '<options>').
 */
export function parseConfigObject(obj: unknown, file: string, opts: ParseObjectOptions = {}): PartialResolved {
  const cwd = opts.cwd ?? process.cwd();
  const entries = parseSource(obj, file, {
    baseDir: opts.baseDir ?? cwd,
    cwd,
    coerce: opts.coerceStrings ?? false,
    acceptFields: opts.coerceStrings ?? false,
    source: file,
  });
  return build(entries, [file]);
}

function describeOrigin(spec: ConfigKeySpec): string {
  const byName = new Map<string, string[]>();
  for (const a of spec.aliases) byName.set(a.name, [...(byName.get(a.name) ?? []), a.file]);
  const parts = [...byName].map(([name, fs]) => `${name} in the original's ${fs.join(' and ')}`);
  if (spec.sameNameIn?.length) parts.push(`same name in the original's ${spec.sameNameIn.join(' and ')}`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

/**
 * Checks that `keys` (canonical names) are set, and returns the config typed accordingly.
 *
 * @param step the command that needs them, e.g. 'cluster' (shown as "semdedup cluster needs ...").
 * @throws ConfigError naming the first missing key, its original names and the files read.
 */
export function requireKeys<C extends PartialConfig & { files?: string[] }, K extends CanonicalKey>(
  cfg: C,
  keys: readonly K[],
  step: string,
): WithKeys<C, K> {
  for (const key of keys) {
    const spec = SPEC_BY_KEY.get(key);
    if (!spec) throw new ConfigError(`unknown config key '${key}'`, { key });
    const field = spec.field;
    const value = field === null ? undefined : (cfg as unknown as Record<string, unknown>)[field];
    if (value === undefined || value === null) {
      const files = cfg.files ?? [];
      const cmd = step.startsWith('semdedup') ? step : `semdedup ${step}`;
      const read = files.length
        ? `none of ${files.join(', ')} sets it`
        : 'no config file was given and no option sets it';
      throw new ConfigError(`${cmd} needs \`${key}\`${describeOrigin(spec)}; ${read}`, { key });
    }
  }
  return cfg as WithKeys<C, K>;
}

function typeText(spec: ConfigKeySpec): string {
  switch (spec.kind) {
    case 'path':
      return 'path';
    case 'paths':
      return 'path, folder, glob or list of paths';
    case 'enum':
      return (spec.values ?? []).map((v) => `\`${v}\``).join(' \\| ');
    case 'posint':
      return 'integer ≥ 1';
    case 'nonnegint':
      return 'integer ≥ 0';
    case 'int':
      return 'integer';
    case 'bool':
      return 'boolean';
    case 'epsList':
      return 'list of numbers in (0, 1)';
    case 'strDtype':
      return 'string dtype (`S24`, `U40`)';
    case 'compat':
      return 'path or None';
    case 'string':
      return 'string';
    case 'rankBy':
      return '`{column, order}` or `column:desc`';
  }
}

/** Renders `configSchema` as a markdown table (key, aliases, type, default, description). */
export function formatConfigDoc(): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    '| key | original names | type | default | description |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const s of SCHEMA) {
    const names = [
      ...s.aliases.map((a) => `\`${a.name}\` (${a.file})`),
      ...(s.sameNameIn?.length ? [`same name (${s.sameNameIn.join(', ')})`] : []),
    ];
    lines.push(
      `| \`${s.key}\` | ${names.join(', ') || '—'} | ${typeText(s)} | ${esc(s.defaultText)} | ${esc(s.description)} |`,
    );
  }
  return lines.join('\n');
}

/**
 * The canonical config as a plain JSON-able object with snake_case keys (our file format), in
 * schema order; unset optional keys are left out. `parseConfigObject` reads it back.
 */
export function toManifest(cfg: PartialConfig | SemDedupConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rec = cfg as unknown as Record<string, unknown>;
  for (const s of SCHEMA) {
    if (s.field === null) continue;
    const v = rec[s.field];
    if (v === undefined || v === null) continue;
    out[s.key] = Array.isArray(v) ? [...v] : v;
  }
  return out;
}
