// The decisions as a table to join back: one row per input row (or per removed row) with its id,
// row, cluster, M, the id of the earlier member that reached M, and the keep decision at each eps
// (the recorded eps list and the requested one). Written as Parquet (extract --format parquet).
import type { Ids } from '../io/ids.js';
import type { TableColumn } from '../io/parquet.js';
import { readManifest } from '../manifest.js';
import { isRemoved } from '../decision.js';
import type { RunArrays } from './common.js';

export interface DecisionTableOptions {
  outputDir: string;
  /** The requested eps (its decisions re-checked in float64 in `run`). */
  eps: number;
  run: RunArrays;
  ids?: Ids;
  /** Only the rows removed at `eps`. */
  removed?: boolean;
  output: string;
  threads?: number;
}

/** The column of the decision at eps: `keep_eps0.05`. */
export const keepColumn = (eps: number) => `keep_eps${eps}`;

export async function writeDecisionTable(o: DecisionTableOptions): Promise<{ rows: number; epsList: number[] }> {
  const { keepOrder, offsets, M, Mrow } = o.run;
  const recorded = (readManifest(o.outputDir).steps.dedup?.params?.epsList as number[] | undefined) ?? [];
  const epsList = [...new Set([...recorded, o.eps])].sort((a, b) => a - b);
  // keep-order positions of the table, in keep order (cluster by cluster)
  const positions: number[] = [];
  for (let p = 0; p < keepOrder.length; p++) if (!o.removed || isRemoved(M[p]!, o.eps)) positions.push(p);
  const cluster = new Int32Array(keepOrder.length);
  for (let c = 0; c + 1 < offsets.length; c++) cluster.fill(c, Number(offsets[c]!), Number(offsets[c + 1]!));
  const idOf = (row: number) => (o.ids ? o.ids.get(row) : String(row));
  const at = (i: number) => positions[i]!;
  const columns: TableColumn[] = [
    { name: 'id', type: 'VARCHAR', get: (i) => idOf(Number(keepOrder[at(i)]!)) },
    { name: 'row', type: 'BIGINT', get: (i) => keepOrder[at(i)]! },
    { name: 'cluster', type: 'INTEGER', get: (i) => cluster[at(i)]! },
    { name: 'M', type: 'DOUBLE', get: (i) => M[at(i)]! },
    { name: 'nearest_earlier_id', type: 'VARCHAR', get: (i) => (Mrow[at(i)]! < 0n ? null : idOf(Number(Mrow[at(i)]!))) },
    ...epsList.map((e): TableColumn => ({ name: keepColumn(e), type: 'BOOLEAN', get: (i) => !isRemoved(M[at(i)]!, e) })),
  ];
  // DuckDB loads only here (and for Parquet inputs): every other command starts without it.
  const { writeParquetTable } = await import('../io/parquet.js');
  await writeParquetTable(o.output, positions.length, columns, o.threads ?? 0);
  return { rows: positions.length, epsList };
}
