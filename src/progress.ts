// Progress: the unit of each stage, its fraction and the fraction of a whole run (one definition
// for the API's `onProgress` readers and the command line), and the command line's display of it:
// a progress bar on a terminal (cli-progress) with log lines above it, quiet lines elsewhere.
import cliProgress from 'cli-progress';
import type { Progress } from './steps/common.js';

/** What `done` and `total` count in a stage's progress reports. */
export type ProgressUnit = 'iterations' | 'rows' | 'clusters';

/**
 * The unit of a stage: k-means training counts iterations (`done` of `niter`); sort's export of
 * the original's per-cluster files counts clusters; every other stage counts rows (embeddings rows
 * checked, assigned, ranked, written; in dedup the members of the clusters done, with a fraction of
 * the cluster under way, so `done` need not be a whole number).
 */
export function unitOf(stage: string): ProgressUnit {
  if (stage === 'train' || stage.endsWith(':train')) return 'iterations';
  if (stage === 'sort:export') return 'clusters';
  return 'rows';
}

/** A progress report with its unit and fractions. */
export interface ProgressReport extends Progress {
  unit: ProgressUnit;
  /** done / total of this stage, in [0, 1]. */
  fraction: number;
  /** Estimated fraction of the whole call (runAll: by the stage weights below), in [0, 1]; absent for a single step. */
  overall?: number;
}

/**
 * Weights of the stages of a whole run in its overall fraction: rough shares of the time of a run
 * on the CPU, so that the overall fraction moves evenly; the stages a run skips (centroids reused,
 * import of a .npy) add their weight when the next stage starts.
 */
export const RUN_STAGE_WEIGHTS: Readonly<Record<string, number>> = Object.freeze({
  import: 0.05,
  check: 0.05,
  normalize: 0.05,
  'cluster:train': 0.25,
  'cluster:assign': 0.1,
  'sort:cosine': 0.05,
  'sort:export': 0.05,
  dedup: 0.35,
  extract: 0.05,
});

/** Adds the unit and the stage's fraction to a report. */
export function describeProgress(p: Progress): ProgressReport {
  const fraction = p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : p.done > 0 ? 1 : 0;
  return { ...p, unit: unitOf(p.stage), fraction };
}

/**
 * A reader of one call's reports that adds the overall fraction: the weights of the stages before
 * the current one (in `weights`' order), plus the current stage's weight times its fraction,
 * never going back. Stages not in `weights` leave it where it is.
 */
export function overallProgress(weights: Readonly<Record<string, number>> = RUN_STAGE_WEIGHTS): (p: Progress) => ProgressReport {
  const order = Object.keys(weights);
  const sum = order.reduce((s, k) => s + weights[k]!, 0);
  let overall = 0;
  return (p) => {
    const r = describeProgress(p);
    const i = order.indexOf(p.stage);
    if (i >= 0) {
      const before = order.slice(0, i).reduce((s, k) => s + weights[k]!, 0);
      overall = Math.max(overall, Math.min(1, (before + weights[p.stage]! * r.fraction) / sum));
    }
    return { ...r, overall };
  };
}

/** The command line's display of progress and log lines. */
export interface ProgressDisplay {
  onProgress: (p: Progress) => void;
  /** Prints a line on stderr (above the bar when one is shown). */
  log: (line: string) => void;
  /** Ends the bar under way (its last state stays on screen). */
  stop: () => void;
}

function fmtCount(x: number): string {
  const n = Math.abs(x) >= 100 || Number.isInteger(x) ? Math.round(x) : x;
  return typeof n === 'number' && Number.isInteger(n) ? n.toLocaleString('en-US') : n.toFixed(1);
}

function fmtRate(perSecond: number, unit: ProgressUnit): string {
  const u = unit === 'iterations' ? 'it' : unit;
  if (!Number.isFinite(perSecond) || perSecond <= 0) return `- ${u}/s`;
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(1)}M ${u}/s`;
  if (perSecond >= 1e4) return `${(perSecond / 1e3).toFixed(0)}k ${u}/s`;
  return `${perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1)} ${u}/s`;
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '-';
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * The display of a command: on a terminal (stderr a TTY), one bar per stage with the stage, the
 * percentage, done/total in the stage's unit, the rate, the elapsed time and the ETA (and the
 * overall percentage of a whole run); log lines are printed above the bar; a finished stage leaves
 * one line at 100%, once. Elsewhere: a line when a stage starts, every 5 s, and when it ends.
 * Nothing with `quiet` (log lines included).
 */
export function progressDisplay(opts: { quiet?: boolean; overall?: boolean; stream?: NodeJS.WriteStream } = {}): ProgressDisplay {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { onProgress: () => {}, log: () => {}, stop: () => {} };
  const withOverall = opts.overall ? overallProgress() : describeProgress;
  const finished = new Set<string>();
  let stage = '';
  let t0 = 0;
  if (!stream.isTTY) {
    let last = 0;
    return {
      onProgress: (p) => {
        const r = withOverall(p);
        if (finished.has(r.stage) && r.fraction >= 1) return;
        const t = Date.now();
        const end = r.fraction >= 1;
        if (r.stage !== stage || t - last > 5000 || end) {
          if (r.stage !== stage) t0 = t;
          const rate = (r.done / Math.max((t - t0) / 1000, 1e-9));
          stream.write(`  ${r.stage} ${(100 * r.fraction).toFixed(1)}% (${fmtCount(r.done)}/${fmtCount(r.total)} ${r.unit}${end && t > t0 ? `, ${fmtRate(rate, r.unit)}, ${fmtSeconds((t - t0) / 1000)}` : ''})\n`);
          last = t;
        }
        stage = r.stage;
        if (end) finished.add(r.stage);
        else finished.delete(r.stage);
      },
      log: (line) => stream.write(`${line}\n`),
      stop: () => {},
    };
  }
  let bar: cliProgress.SingleBar | undefined;
  let done0 = 0;
  // Rate and ETA from the first report of the stage on, once there is something to measure.
  const payload = (r: ProgressReport, t: number) => {
    const secs = (t - t0) / 1000;
    const rate = secs >= 0.2 && r.done > done0 ? (r.done - done0) / secs : NaN;
    return {
      stage: r.stage.padEnd(14),
      count: `${fmtCount(r.done)}/${fmtCount(r.total)} ${r.unit}`,
      rate: fmtRate(rate, r.unit),
      // (not `eta` / `duration`: cli-progress's own tokens)
      elapsedText: fmtSeconds(secs),
      etaText: r.fraction >= 1 ? '0s' : fmtSeconds((r.total - r.done) / rate),
      overall: r.overall !== undefined ? ` | run ${(100 * r.overall).toFixed(0)}%` : '',
    };
  };
  const end = (): void => {
    if (!bar) return;
    bar.stop();
    bar = undefined;
  };
  return {
    onProgress: (p) => {
      const r = withOverall(p);
      // A stage reported at 100% once: later reports of it (a second pass of the same name) are not drawn again.
      if (finished.has(r.stage) && r.fraction >= 1) return;
      const t = Date.now();
      if (!bar || r.stage !== stage) {
        end();
        stage = r.stage;
        t0 = t;
        done0 = r.done < r.total ? r.done : 0;
        finished.delete(r.stage);
        bar = new cliProgress.SingleBar(
          {
            stream,
            format: '  {stage} {bar} {percentage}% | {count} | {rate} | {elapsedText} elapsed | ETA {etaText}{overall}',
            barsize: 20,
            hideCursor: false,
            linewrap: false,
            fps: 10,
            formatValue: (v: number, o: cliProgress.Options, type: string) => (type === 'percentage' ? String(v).padStart(3) : cliProgress.Format.ValueFormat(v, o, type as cliProgress.ValueType)),
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(Math.max(r.total, 1e-9), Math.min(r.done, r.total), payload(r, t));
      }
      bar.setTotal(Math.max(r.total, 1e-9));
      bar.update(Math.min(r.done, r.total), payload(r, t));
      if (r.fraction >= 1) {
        finished.add(r.stage);
        end();
      }
    },
    log: (line) => {
      if (!bar) {
        stream.write(`${line}\n`);
        return;
      }
      // Above the bar: clear its line, print, draw the bar again below (and move the cursor
      // position the bar restores when it stops to its new line: ESC 7 saves it).
      stream.write(`\r\x1b[K${line}\n\x1b7`);
      bar.render();
    },
    stop: end,
  };
}
