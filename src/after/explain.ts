// Why each member went (SPEC "Explanation of a removal"): for a removed member j, the earlier
// member of its cluster that reaches M[j] (step 4's M_row) and the similarity M[j]. Streams CSV
// or JSON Lines; answers for one id; lists the members within a distance of the threshold.
import { InputError } from '../errors.js';
import { openOutputWriter } from '../io/atomic.js';
import type { Ids } from '../io/ids.js';
import { checkRunIds, clusterOfPositions, csvField, formatFor, LineSink, recheckEps, type RunFolderOptions, type TableFormat } from './common.js';
import { isRemovedAt, thresholdOf, validateOneEps } from '../decision.js';

export interface ExplainOptions extends RunFolderOptions {
  eps: number;
  /** Ids of the rows (default: row numbers). */
  ids?: Ids;
  /** File to write (CSV, or JSON Lines for .jsonl); absent: nothing is written, counts only. */
  output?: string;
  format?: TableFormat;
  /**
   * List the members whose M lies within this distance of 1 − eps (kept or removed) instead of
   * the removed ones: the decisions a person should look at before choosing eps.
   */
  near?: number;
}

export interface ExplainRow {
  id: string;
  row: number;
  cluster: number;
  /** Position in the cluster's keep order. */
  position: number;
  removed: boolean;
  /** The earlier member that reaches M, or null when M = 0 came from the clamp. */
  byId: string | null;
  byRow: number | null;
  similarity: number;
}

export interface ExplainResult {
  eps: number;
  /** Lines written (removed members, or members near the threshold). */
  lines: number;
  removed: number;
  kept: number;
  rechecked: number;
  output?: string;
}

const HEADER = 'id,row,cluster,position,removed,by_id,by_row,similarity,distance_to_threshold';

function idOf(ids: Ids | undefined, row: number): string {
  return ids ? ids.get(row) : String(row);
}

export async function explainRemovals(opts: ExplainOptions): Promise<ExplainResult> {
  validateOneEps(opts.eps);
  if (opts.near !== undefined && !(opts.near >= 0 && Number.isFinite(opts.near)))
    throw new InputError(`near must be a distance >= 0, got ${opts.near}`, { key: 'near' });
  const run = await recheckEps({ ...opts, eps: [opts.eps] });
  checkRunIds(opts.outputDir, opts.ids);
  const { keepOrder, offsets, M, Mrow } = run;
  if (opts.ids && opts.ids.length < keepOrder.length)
    throw new InputError(`the ids hold ${opts.ids.length} entries but the run has ${keepOrder.length} rows`);
  const t = thresholdOf(opts.eps);
  const cluster = clusterOfPositions(offsets);
  const format = formatFor(opts.output, opts.format);
  const writer = opts.output ? openOutputWriter(opts.output) : undefined;
  let lines = 0;
  let removed = 0;
  try {
    const sink = new LineSink((s) => writer?.write(s));
    if (writer && format === 'csv') sink.push(HEADER);
    for (let p = 0; p < M.length; p++) {
      const m = M[p]!;
      const gone = isRemovedAt(m, t);
      if (gone) removed++;
      const listed = opts.near !== undefined ? Math.abs(m - t) <= opts.near : gone;
      if (!listed) continue;
      lines++;
      if (!writer) continue;
      const row = Number(keepOrder[p]!);
      const c = cluster[p]!;
      const by = Number(Mrow[p]!);
      const id = idOf(opts.ids, row);
      const byId = by >= 0 ? idOf(opts.ids, by) : null;
      const pos = p - Number(offsets[c]!);
      if (format === 'csv')
        sink.push(`${csvField(id)},${row},${c},${pos},${gone},${byId === null ? '' : csvField(byId)},${by >= 0 ? by : ''},${m},${m - t}`);
      else
        sink.push(JSON.stringify({ id, row, cluster: c, position: pos, removed: gone, by_id: byId, by_row: by >= 0 ? by : null, similarity: m, distance_to_threshold: m - t }));
    }
    sink.flush();
    writer?.commit();
  } catch (e) {
    writer?.abort();
    throw e;
  }
  opts.log?.(`eps ${opts.eps}: ${removed} removed${opts.near !== undefined ? `, ${lines} within ${opts.near} of the threshold` : ''}${opts.output ? ` -> ${opts.output}` : ''}`);
  return { eps: opts.eps, lines, removed, kept: M.length - removed, rechecked: run.rechecked, ...(opts.output ? { output: opts.output } : {}) };
}

export interface ExplainIdOptions extends RunFolderOptions {
  eps: number;
  /** The id to explain (a row number when there are no ids). */
  id: string;
  ids?: Ids;
}

/** Kept or removed, and the nearest earlier member of its cluster, for one id. */
export async function explainId(opts: ExplainIdOptions): Promise<ExplainRow & { eps: number; threshold: number; nearestEarlier: string }> {
  validateOneEps(opts.eps);
  const run = await recheckEps({ ...opts, eps: [opts.eps] });
  checkRunIds(opts.outputDir, opts.ids);
  const { keepOrder, offsets, M, Mrow } = run;
  let row = -1;
  if (opts.ids) {
    for (let i = 0; i < opts.ids.length; i++)
      if (opts.ids.get(i) === opts.id) {
        row = i;
        break;
      }
  } else if (/^\d+$/.test(opts.id) && Number(opts.id) < keepOrder.length) row = Number(opts.id);
  if (row < 0) throw new InputError(`id '${opts.id}' is not in the ids of this run`, { key: 'id' });
  const want = BigInt(row);
  let p = -1;
  for (let i = 0; i < keepOrder.length; i++)
    if (keepOrder[i] === want) {
      p = i;
      break;
    }
  if (p < 0) throw new InputError(`row ${row} ('${opts.id}') is not in the keep order of this run`, { key: 'id' });
  let c = 0;
  while (Number(offsets[c + 1]!) <= p) c++;
  const m = M[p]!;
  const by = Number(Mrow[p]!);
  const t = thresholdOf(opts.eps);
  const pos = p - Number(offsets[c]!);
  const byId = by >= 0 ? idOf(opts.ids, by) : null;
  return {
    eps: opts.eps,
    threshold: t,
    id: opts.id,
    row,
    cluster: c,
    position: pos,
    removed: isRemovedAt(m, t),
    byId,
    byRow: by >= 0 ? by : null,
    similarity: m,
    nearestEarlier:
      byId !== null
        ? `${byId} (similarity ${m})`
        : pos === 0
          ? 'none: first member of its cluster in keep order'
          : 'none: no earlier member has a positive similarity',
  };
}
