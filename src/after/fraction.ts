// Kept fraction against eps, and the eps that keeps a target fraction (SPEC "Target kept
// fraction"): the kept share of an eps is #{j : M[j] <= 1 - eps} / N (src/decision.ts), so a target maps to an eps
// through the sorted M. Ties of M make some counts unreachable; the closest reachable count wins
// (the smaller eps on a tie), the eps is the shortest decimal in the interval that gives it, and
// the members near that eps are re-checked in float64 before the final decision.
import { ConfigError } from '../errors.js';
import type { Ids } from '../io/ids.js';
import { extractPrunedData, type ExtractResult } from '../steps/extract.js';
import { summarize } from '../steps/dedup.js';
import { checkRunIds, recheckEps, readRun, type RunArrays, type RunFolderOptions } from './common.js';
import { epsOf, thresholdOf, validateOneEps } from '../decision.js';
import { writeDecisionTable } from './table.js';

export interface CurvePoint {
  eps: number;
  kept: number;
  keptFraction: number;
}

export interface CurveOptions {
  outputDir: string;
  /** Params the dedup step must have run with (e.g. whichToKeep) for its files to be read. */
  want?: Record<string, unknown>;
  /** The eps values (default: a fine grid, `from` to `to` by `step`). */
  eps?: number[];
  /** Grid start (default 0.001). */
  from?: number;
  /** Grid end (default 0.5). */
  to?: number;
  /** Grid step (default 0.001). */
  step?: number;
  /** Step 4's arrays when the caller has them. */
  run?: RunArrays;
}

export interface CurveResult {
  n: number;
  points: CurvePoint[];
  /** The eps values recorded by the dedup step (exact decisions there; elsewhere M is within the fp32 bound). */
  recordedEps: number[];
}

/** Sorted copy of M (ascending). */
function sortedM(M: Float64Array): Float64Array {
  return Float64Array.from(M).sort();
}

/** #{v <= t} in an ascending array: the members kept at threshold t (decision.ts: removed when M > t). */
function countAtMost(sorted: Float64Array, t: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** x as an exact decimal m / 10^s, from the shortest decimal that reads back as x (what the user wrote). */
function decimalOf(x: number): { m: bigint; s: number } {
  const [mant, e] = String(x).toLowerCase().split('e') as [string, string | undefined];
  const [ip, fp = ''] = mant.split('.') as [string, string | undefined];
  let m = BigInt(ip + fp);
  let s = fp.length - Number(e ?? 0);
  if (s < 0) {
    m *= 10n ** BigInt(-s);
    s = 0;
  }
  return { m, s };
}

/**
 * The eps grid from, from + step, ... up to to, computed in exact decimals: every value is the
 * decimal the user would write (from 0.000015 by 0.001: 0.000015, 0.001015, ...), never rounded
 * away from what was given.
 */
export function epsGrid(from = 0.001, to = 0.5, step = 0.001): number[] {
  for (const [k, v] of [['from', from], ['to', to]] as const) validateOneEps(v, k);
  if (typeof step !== 'number' || !Number.isFinite(step) || !(step > 0))
    throw new ConfigError(`the eps grid's step must be a number > 0, got ${step}`, { key: 'step' });
  if (to < from) throw new ConfigError(`the eps grid needs from <= to (from ${from}, to ${to})`, { key: 'to' });
  const [f, t, st] = [decimalOf(from), decimalOf(to), decimalOf(step)];
  const scale = Math.max(f.s, t.s, st.s);
  const at = (d: { m: bigint; s: number }) => d.m * 10n ** BigInt(scale - d.s);
  const [F, T, S] = [at(f), at(t), at(st)];
  const count = (T - F) / S + 1n;
  if (count > 1_000_000n) throw new ConfigError(`the eps grid would have ${count} points; use a larger step`, { key: 'step' });
  return Array.from({ length: Number(count) }, (_, i) => Number(`${F + BigInt(i) * S}e-${scale}`));
}

/** Kept fraction against eps, from the stored M (no recomputation). */
export async function keptFractionCurve(opts: CurveOptions): Promise<CurveResult> {
  const run = opts.run ?? readRun(opts.outputDir, opts.want);
  const eps = opts.eps ?? epsGrid(opts.from, opts.to, opts.step);
  for (const e of eps) validateOneEps(e);
  const s = sortedM(run.M);
  const n = s.length;
  const points = eps.map((e) => {
    const kept = countAtMost(s, thresholdOf(e));
    return { eps: e, kept, keptFraction: n ? kept / n : 1 };
  });
  return { n, points, recordedEps: run.recordedEps };
}

export interface EpsChoice {
  eps: number;
  /** Kept members at that eps by the M it was chosen from. */
  kept: number;
  /** The target count f · N. */
  target: number;
}

/** The shortest decimal in (a, b], or undefined. */
function shortestIn(a: number, b: number, ok: (x: number) => boolean): number | undefined {
  for (let digits = 1; digits <= 17; digits++) {
    const scale = 10 ** digits;
    let x = Math.ceil(a * scale) / scale;
    if (x <= a) x = (Math.round(a * scale) + 1) / scale;
    const y = Number(x.toFixed(digits));
    if (y > a && y <= b && ok(y)) return y;
  }
  return undefined;
}

/**
 * The shortest decimal in the middle half of (lo, hi] (away from the values of M at both ends,
 * so that the float64 re-check near it rarely moves the count), else anywhere in (lo, hi].
 */
function shortestDecimal(lo: number, hi: number, ok: (x: number) => boolean): number {
  const q = (hi - lo) / 4;
  return shortestIn(lo + q, hi - q, ok) ?? shortestIn(lo, hi, ok) ?? hi;
}

/**
 * The eps whose kept count (members with M <= 1 − eps) is closest to keepFraction · N, preferring
 * the smaller eps (more kept) on a tie; the eps is the shortest decimal that gives that count.
 */
export function chooseEpsForFraction(M: Float64Array, keepFraction: number): EpsChoice {
  if (!(keepFraction >= 0 && keepFraction <= 1)) throw new ConfigError(`the kept fraction must be between 0 and 1, got ${keepFraction}`, { key: 'keep_fraction' });
  const s = sortedM(M);
  const n = s.length;
  const target = keepFraction * n;
  // Reachable counts: for t = 1 - eps in (0, 1), kept = #{M <= t}. It is constant on [v_j, v_{j+1})
  // between consecutive distinct values of M; below the smallest value it is 0.
  let best: { kept: number; lo: number; hi: number } | undefined;
  const consider = (kept: number, tLo: number, tHi: number) => {
    // t in [tLo, tHi) ∩ (0, 1); eps = 1 - t in (1 - tHi, 1 - tLo].
    const lo = Math.max(0, epsOf(tHi));
    const hi = Math.min(epsOf(tLo), 1 - Number.EPSILON);
    if (!(hi > lo) || hi <= 0) return;
    const d = Math.abs(kept - target);
    // A larger kept count is a smaller eps: it wins ties because it is visited last.
    if (!best || d <= Math.abs(best.kept - target)) best = { kept, lo, hi };
  };
  if (n === 0) return { eps: 0.5, kept: 0, target };
  consider(0, -Infinity, s[0]!);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j < n && s[j] === s[i]) j++;
    consider(j, s[i]!, j < n ? s[j]! : Infinity);
    i = j;
  }
  if (!best) throw new ConfigError(`no eps strictly between 0 and 1 reaches a kept fraction near ${keepFraction}`, { key: 'keep_fraction' });
  const b: { kept: number; lo: number; hi: number } = best;
  const eps = shortestDecimal(b.lo, b.hi, (e) => countAtMost(s, thresholdOf(e)) === b.kept);
  return { eps, kept: countAtMost(s, thresholdOf(eps)), target };
}

export interface FractionOptions extends RunFolderOptions {
  /** Target kept fraction in [0, 1]. */
  keepFraction?: number;
  /** Target removed fraction in [0, 1] (keepFraction = 1 − removeFraction). */
  removeFraction?: number;
}

export interface FractionChoice extends EpsChoice {
  n: number;
  keptFraction: number;
  /** Members re-checked in float64 near the chosen eps. */
  rechecked: number;
  /** M and M_row after the re-check (copies when anything was re-checked). */
  run: RunArrays;
}

/**
 * The eps for a target kept (or removed) fraction, with the decisions near it re-checked in
 * float64: after the re-check the choice is made again from the corrected M, until it is stable.
 */
export async function epsForFraction(opts: FractionOptions): Promise<FractionChoice> {
  if ((opts.keepFraction === undefined) === (opts.removeFraction === undefined))
    throw new ConfigError('give exactly one of keepFraction (--keep-fraction) and removeFraction (--remove-fraction)', { key: 'keep_fraction' });
  const f = opts.keepFraction ?? 1 - opts.removeFraction!;
  if (!(f >= 0 && f <= 1)) throw new ConfigError(`the target fraction must be between 0 and 1, got ${opts.keepFraction ?? opts.removeFraction}`, { key: 'keep_fraction' });
  let run = readRun(opts.outputDir, opts.want);
  const base = run;
  let rechecked = 0;
  // Windows [t - m, t + m] of thresholds in which M is float64 after a re-check. The re-check
  // uses twice the core's margin, so that a choice that moves by less than the margin after it
  // (M values are dense: a few float64 corrections move the count) needs no second pass.
  const covered: { t: number; m: number }[] = [];
  let needed = 0;
  for (let round = 0; round < 8; round++) {
    const choice = chooseEpsForFraction(run.M, f);
    const t = thresholdOf(choice.eps);
    const done = run.recordedEps.includes(choice.eps) || covered.some((w) => Math.abs(t - w.t) + needed <= w.m);
    if (done) {
      const n = run.M.length;
      return { ...choice, n, keptFraction: n ? choice.kept / n : 1, rechecked, run };
    }
    // Re-check near this eps on top of what earlier rounds corrected.
    const r = await recheckEps({ ...opts, eps: [choice.eps], run: { ...run, recordedEps: base.recordedEps }, marginScale: 2 });
    rechecked += r.rechecked;
    needed = r.margin / 2;
    covered.push({ t, m: r.margin });
    run = { keepOrder: r.keepOrder, offsets: r.offsets, M: r.M, Mrow: r.Mrow, recordedEps: base.recordedEps };
  }
  const choice = chooseEpsForFraction(run.M, f);
  const n = run.M.length;
  return { ...choice, n, keptFraction: n ? choice.kept / n : 1, rechecked, run };
}

export interface ExtractAtOptions extends RunFolderOptions {
  /** The eps (or give keepFraction / removeFraction). */
  eps?: number;
  keepFraction?: number;
  removeFraction?: number;
  /** Text file for the ids. */
  output?: string;
  /** Write the removed ids instead of the kept ones. */
  removed?: boolean;
  ids?: Ids;
  /** 'text' (default): the ids, one per line; 'parquet': a table of every row (or every removed row) with its decisions (src/after/table.ts). */
  format?: 'text' | 'parquet';
  /** The text file: ids in cluster order (default) or input order; a POSIX text file (default) or the original's bytes. */
  order?: 'cluster' | 'input';
  fileFormat?: 'posix' | 'original';
}

export interface ExtractAtResult extends ExtractResult {
  /** Members re-checked in float64 (eps not recorded by the dedup step). */
  rechecked: number;
  /** Set when the eps was chosen for a target fraction. */
  choice?: { target: number; keepFraction: number; kept: number };
}

/**
 * Step 5 for any eps: a recorded eps extracts from the stored M; any other eps (given, or chosen
 * for a target fraction) first re-checks the members near its threshold in float64.
 */
export async function extractAt(opts: ExtractAtOptions): Promise<ExtractAtResult> {
  const byFraction = opts.keepFraction !== undefined || opts.removeFraction !== undefined;
  if (byFraction === (opts.eps !== undefined))
    throw new ConfigError('give either an eps (--eps) or a target fraction (--keep-fraction / --remove-fraction)', { key: 'eps' });
  let eps: number;
  let run: RunArrays;
  let rechecked = 0;
  let choice: ExtractAtResult['choice'];
  if (byFraction) {
    const c = await epsForFraction(opts);
    eps = c.eps;
    run = c.run;
    rechecked = c.rechecked;
    choice = { target: c.target, keepFraction: opts.keepFraction ?? 1 - opts.removeFraction!, kept: c.kept };
    opts.log?.(`eps ${eps} keeps ${c.kept} of ${c.n} (target ${c.target.toFixed(1)}, ${(100 * c.keptFraction).toFixed(3)}%)`);
  } else {
    eps = opts.eps!;
    validateOneEps(eps);
    const r = await recheckEps({ ...opts, eps: [eps] });
    run = r;
    rechecked = r.rechecked;
  }
  checkRunIds(opts.outputDir, opts.ids);
  if (opts.format === 'parquet') {
    if (!opts.output) throw new ConfigError('extract --format parquet needs --output FILE', { key: 'output' });
    const t0 = performance.now();
    const t = await writeDecisionTable({ outputDir: opts.outputDir, eps, run, output: opts.output, ...(opts.ids ? { ids: opts.ids } : {}), ...(opts.removed ? { removed: true } : {}) });
    const summary = summarize(run.M, [eps])[0]!;
    opts.log?.(`${t.rows} rows (decisions at eps ${t.epsList.join(', ')}) -> ${opts.output}`);
    return { eps, keptRows: new BigInt64Array(0), removedRows: new BigInt64Array(0), summary, output: opts.output, seconds: (performance.now() - t0) / 1000, rechecked, ...(choice ? { choice } : {}) };
  }
  const r = await extractPrunedData({
    outputDir: opts.outputDir,
    eps,
    data: { keepOrder: run.keepOrder, M: run.M },
    ...(opts.output ? { output: opts.output } : {}),
    ...(opts.removed ? { removed: true } : {}),
    ...(opts.ids ? { ids: opts.ids } : {}),
    ...(opts.log ? { log: opts.log } : {}),
    ...(opts.order ? { order: opts.order } : {}),
    ...(opts.fileFormat ? { fileFormat: opts.fileFormat } : {}),
  });
  return { ...r, rechecked, ...(choice ? { choice } : {}) };
}
