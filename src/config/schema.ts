// The one configuration schema of the engine: one row per canonical key, with the original's
// names for it, its kind of value, its default and its description. The types of the config
// (`PartialConfig`, `SemDedupConfig`, the API's `RunOptions`) are derived from it; the loader
// (./load.ts) validates against it and the docs (./docs.ts) render it.

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
  | 'similarityList' // as epsList, read as cosine similarities: sets eps_list to 1 − each value
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
  /** For `similarityList`: the canonical key it sets (as 1 − each value). */
  readonly sets?: string;
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
    defaultText: 'round(√N), at most N / min_points_per_centroid',
    description:
      'Number of k-means clusters. Unset: round(√N) for N rows, lowered so that every centroid has ' +
      '`min_points_per_centroid` training points (README, "Choosing k").',
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
    key: 'threshold', field: null, kind: 'similarityList', sets: 'eps_list', aliases: [], defaultText: 'none',
    description:
      "Cosine-similarity thresholds (SemHash's `threshold`), another way to give `eps_list`: eps = 1 − threshold, so " +
      'a member is removed when its similarity to an earlier member is > threshold (0.9 is eps 0.1). Not together with `eps_list`.',
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

/** One row of `configSchema`, with its literal types. */
export type SchemaRow = (typeof configSchema)[number];
/** Canonical (snake_case) config keys. */
export type CanonicalKey = SchemaRow['key'];
/** The type of a row's value once validated. */
export type ValueOf<R> = R extends { readonly kind: 'enum'; readonly values: readonly (infer V)[] }
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
/** The rows that are fields of the config. */
export type FieldRow = Extract<SchemaRow, { readonly field: string }>;
type Defaulted = Extract<FieldRow, { readonly default: unknown }>;
type Optional = Exclude<FieldRow, Defaulted>;

/**
 * The typed configuration, derived from the schema: a key with a default is always present, the
 * others are optional (paths are absolute). `sources` says where each value came from, by
 * canonical key: a file label, 'option' or 'default'.
 */
export type PartialConfig = { [R in Defaulted as R['field']]: ValueOf<R> } & { [R in Optional as R['field']]?: ValueOf<R> } & {
  sources: Record<string, string>;
  /**
   * The name each key was given by, by canonical key, where a file or option set it (e.g.
   * `k: 'ncentroids'`, `eps_list: 'threshold'`): messages speak of keys by the user's own names.
   */
  names?: Record<string, string>;
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
