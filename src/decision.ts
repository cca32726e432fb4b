// The dedup decision, its one home on the TypeScript side (the C++ side is
// native/core/semdedup/decision.hpp, which applies the same rule to the thresholds it is given):
//   - the threshold of an eps is 1 − eps (native code receives thresholds, never eps);
//   - a member is removed when its M (largest similarity to an earlier member of its cluster, or
//     of a row to a reference set) is above the threshold, kept when M <= threshold;
//   - eps is a number strictly between 0 and 1, k a positive integer (at most the row count);
//   - spherical k-means assigns by inner product, so it goes with sim_metric 'cosine', never 'l2'
//     (the assignment's innerProduct is the spherical flag).
import { ConfigError } from './errors.js';

/** The similarity threshold of an eps: a member whose M is above it is removed. */
export function thresholdOf(eps: number): number {
  return 1 - eps;
}

/** The thresholds of an eps list, in its order (what native code receives). */
export function thresholdsOf(epsList: readonly number[]): number[] {
  return epsList.map(thresholdOf);
}

/** The eps whose threshold is t (the inverse of thresholdOf). */
export function epsOf(threshold: number): number {
  return 1 - threshold;
}

/** The removal rule at a threshold: M > threshold. */
export function isRemovedAt(m: number, threshold: number): boolean {
  return m > threshold;
}

/** The removal rule at an eps: M > 1 − eps. */
export function isRemoved(m: number, eps: number): boolean {
  return isRemovedAt(m, thresholdOf(eps));
}

function isEps(eps: unknown): boolean {
  return typeof eps === 'number' && Number.isFinite(eps) && eps > 0 && eps < 1;
}

/** Checks one eps (strictly between 0 and 1); `key` names the option in the error. */
export function validateOneEps(eps: number, key = 'eps'): void {
  if (!isEps(eps)) throw new ConfigError(`${key} must be a number strictly between 0 and 1, got ${eps}`, { key });
}

/** Checks an eps list: at least one eps, each strictly between 0 and 1. */
export function validateEps(epsList: readonly number[]): void {
  if (epsList.length === 0) throw new ConfigError('eps_list is empty: give at least one eps (e.g. --eps-list 0.01,0.05)', { key: 'eps_list' });
  for (const e of epsList) if (!isEps(e)) throw new ConfigError(`eps must be a number strictly between 0 and 1, got ${e}`, { key: 'eps_list' });
}

/** Checks k (ncentroids): a positive integer, and at most the n rows of `file` when given. */
export function validateK(k: number, rows?: { n: number; file: string }, name?: string): void {
  // `name`: the key as the user wrote it (k, ncentroids, num_clusters), for the message.
  const what = name ?? 'k (ncentroids)';
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`${what} must be a positive integer, got ${k}`, { key: 'k' });
  if (rows && k > rows.n)
    throw new ConfigError(`${name ?? 'k'} = ${k} (${name ? 'the number of clusters' : 'ncentroids'}) is larger than the number of rows N = ${rows.n} in ${rows.file}`, { key: 'k', file: rows.file });
}

/**
 * Whether sim_metric and spherical conflict: spherical k-means assigns by inner product, so it
 * cannot go with sim_metric 'l2'.
 */
export function metricConflicts(simMetric: unknown, spherical: unknown): boolean {
  return simMetric === 'l2' && spherical === true;
}
