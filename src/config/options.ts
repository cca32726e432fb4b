// The API's options, typed from the schema (./schema.ts): every field of the config under its
// camelCase name, each optional, with the type its row validates to. An options object goes
// through the same loader as a file (./load.ts), so it gets the same checks, the same defaults and
// the same messages; a misspelt key is a compile error in TypeScript and a ConfigError at run time.
// Also here: the rules that need more than one key or the data (the default k from N, the
// warnings on a config that is valid but likely a mistake).
import { loadConfigFiles } from './load.js';
import { thresholdOf } from '../decision.js';
import type { FieldRow, LoadOptions, PartialConfig, PartialResolved, ValueOf } from './schema.js';

/**
 * Options of a run, by field name (camelCase), each optional; unset ones take the schema's
 * defaults (README, "Configuration"). Paths may be relative (to the current directory).
 */
export type RunOptions = { [R in FieldRow as R['field']]?: ValueOf<R> } & {
  /**
   * Cosine-similarity thresholds (SemHash's `threshold`), instead of `epsList`: eps = 1 − threshold;
   * a member is removed when its similarity to an earlier member of its cluster is > threshold.
   */
  threshold?: number | number[];
};

/** Options of `runAll`: the embeddings and the output folder are needed; k defaults from N. */
export type RunAllOptions = RunOptions & { embeddings: string | string[]; outputDir: string };

/** A config as the loaders return it (as opposed to options still to be validated). */
export function isResolved(cfg: object): cfg is PartialResolved {
  const c = cfg as Partial<PartialResolved>;
  return typeof c.sources === 'object' && c.sources !== null && Array.isArray(c.files);
}

/**
 * Validates options (or passes a loaded config through): the schema's checks and defaults, as for
 * a file; messages name the option as `<options>: key 'k' ...`. With `files`, the options are
 * typed overrides of those config files (ours or the original's), as the CLI's options are.
 */
export function resolveOptions(opts: RunOptions | PartialResolved, load: LoadOptions & { files?: readonly string[] } = {}): PartialResolved {
  if (isResolved(opts)) return opts;
  const { files, ...rest } = load;
  return loadConfigFiles([...(files ?? [])], opts as Record<string, unknown>, rest);
}

/** The name the user gave `key` (canonical) by: an alias such as `ncentroids`, a field name, or the key. */
export function keyName(cfg: Pick<PartialConfig, 'names'>, key: string): string {
  return cfg.names?.[key] ?? key;
}

/**
 * The number of clusters when `k` is unset: round(√N), lowered to N / min_points_per_centroid so
 * that each centroid has that many training points (and at least 1). √N balances the two costs
 * that k trades: k-means grows as N·k, step 4 as N²/k (the sum of the squared cluster sizes). For
 * LAION-440M it gives 20,976, the order of the original's 50,000 (README, "Choosing k").
 */
export function defaultK(n: number, minPointsPerCentroid = 39): number {
  const byRoot = Math.round(Math.sqrt(n));
  const byPoints = Math.floor(n / Math.max(1, minPointsPerCentroid));
  return Math.max(1, Math.min(byRoot, byPoints));
}

/**
 * Sets `k` from N when no file or option set it (recorded as the default in `sources`); returns a
 * log line saying so, or undefined when k was set.
 */
export function applyDefaultK(cfg: PartialResolved, n: number): string | undefined {
  if (cfg.k !== undefined) return undefined;
  const k = defaultK(n, cfg.minPointsPerCentroid);
  cfg.k = k;
  cfg.sources = { ...cfg.sources, k: 'default' };
  return `k not set: using k = ${k} for N = ${n} rows (round(√N), at most N / min_points_per_centroid ${cfg.minPointsPerCentroid}); set k (ncentroids) to choose`;
}

/**
 * Warnings on a valid config that is likely a mistake: an eps ≥ 0.5 removes every member whose
 * similarity to an earlier one is above 1 − eps ≤ 0.5, most of a typical cluster; it is usually a
 * similarity (SemHash's `threshold=0.9`) given as eps.
 */
export function configWarnings(cfg: Pick<PartialConfig, 'epsList' | 'names' | 'sources'>): string[] {
  const out: string[] = [];
  const name = keyName(cfg, 'eps_list');
  const where = cfg.sources?.eps_list && cfg.sources.eps_list !== 'default' && cfg.sources.eps_list !== 'option' ? ` in ${cfg.sources.eps_list}` : '';
  for (const eps of cfg.epsList ?? []) {
    if (!(eps >= 0.5)) continue;
    const t = Number(thresholdOf(eps).toPrecision(15));
    out.push(
      name === 'threshold'
        ? `warning: threshold ${t}${where} removes every member whose cosine similarity to an earlier member of its cluster is above ${t}, most of a typical cluster; near-duplicates are usually above 0.9`
        : `warning: eps ${eps} (${name}${where}) removes every member whose cosine similarity to an earlier member of its cluster is above ${t}, most of a typical cluster; eps is 1 − similarity: for a similarity threshold of ${eps}, give eps ${t} or threshold: ${eps}`,
    );
  }
  return out;
}
