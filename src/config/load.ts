// The loader of the configuration schema (./schema.ts).
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
import { parseYamlLikePyYAML } from '../io/yaml11.js';
import { ConfigError } from '../errors.js';
import { epsOf, metricConflicts } from '../decision.js';
import { outputs } from '../layout.js';
import {
  configSchema,
  type CanonicalKey,
  type ConfigKeySpec,
  type LoadOptions,
  type ParseObjectOptions,
  type PartialConfig,
  type PartialResolved,
  type RankBy,
  type SemDedupConfig,
  type WithKeys,
} from './schema.js';

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
    case 'similarityList':
      // eps = 1 − similarity, rounded to 15 significant digits so that 0.9 gives eps 0.1 (not 0.09999999999999998).
      return parseEps(v, ctx, spec).map((t) => Number(epsOf(t).toPrecision(15)));
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
    // A key that sets another (threshold sets eps_list) is stored under the key it sets.
    const key = spec.sets ?? spec.key;
    const prev = out.get(key);
    if (prev && !sameValue(prev.value, value)) {
      throw new ConfigError(
        `${file}: keys '${prev.name}' and '${name}' both set '${key}', to different values ` +
          `(${show(prev.value)} and ${show(value)}${spec.sets ? `, as ${key}` : ''})`,
        { file, key },
      );
    }
    out.set(key, { value, source: opts.source, name });
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
  const names: Record<string, string> = {};
  for (const [key, e] of entries) names[key] = e.name;
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
  cfg.names = names;
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
