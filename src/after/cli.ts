// The command line of the commands that work from a finished run: curve, explain, decontaminate,
// report, exact-duplicates, and extract by eps or by a target fraction. This module declares the
// commands and their options only; each action's module (./actions.ts, and through it the steps)
// is imported when the command runs, so that the start of every other command does not pay for it.
import { Option, type Command } from 'commander';
import { withCommon } from '../cli-common.js';

type Actions = typeof import('./actions.js');
type ActionName = 'extractAction' | 'curveAction' | 'explainAction' | 'decontaminateAction' | 'reportAction' | 'exactDuplicatesAction';

/** A command's action (its output folder argument and options, as commander passes them), importing ./actions.js when it runs. */
export function lazy<N extends ActionName>(name: N): (outputDir: string | undefined, o: Parameters<Actions[N]>[1]) => Promise<void> {
  return async (outputDir, o) => {
    const actions: Actions = await import('./actions.js');
    await (actions[name] as (d: string | undefined, o: unknown) => Promise<void>)(outputDir, o);
  };
}

/** Adds the extract options for a target fraction to the extract command. */
export function extractFractionOptions(cmd: Command): Command {
  return cmd
    .option('--keep-fraction <f>', 'choose the eps whose kept share is closest to f (0..1), print it and extract at it')
    .option('--remove-fraction <f>', 'the same for the removed share')
    .addOption(new Option('--format <format>', 'text: the ids, one per line; parquet: one row per input row (or per removed row with --removed): id, row, cluster, M, nearest_earlier_id, keep_eps<eps> per eps').choices(['text', 'parquet']));
}

export function registerAfterCommands(program: Command): void {
  withCommon(program.command('curve').description('kept fraction against eps on a fine grid, from the stored M'), 'curve')
    .option('--from <eps>', 'first eps of the grid', '0.001')
    .option('--to <eps>', 'last eps of the grid', '0.3')
    .option('--step <eps>', 'grid step', '0.001')
    .action(lazy('curveAction'));

  withCommon(program.command('explain').description('why each member was removed: the earlier member reaching M, the similarity, the cluster'), 'explain')
    .requiredOption('--eps <eps>', 'the eps (one not in eps_list is re-checked in float64 near its threshold)')
    .option('--id <id>', 'answer for one id: kept or removed, and its nearest earlier member')
    .option('--near <distance>', 'list the members whose M lies within this distance of 1 - eps instead')
    .option('-o, --output <file>', 'CSV, or JSON Lines for .jsonl (default: explain_eps{eps}.csv in the output folder)')
    .addOption(new Option('--format <format>', 'table format').choices(['csv', 'jsonl']))
    .action(lazy('explainAction'));

  withCommon(program.command('decontaminate').description('remove every row within eps of a reference row (e.g. a benchmark test set)'), 'decontaminate')
    .requiredOption('--reference <file>', 'reference embeddings (.npy, or a raw float32 memmap of the same dimension)')
    .requiredOption('--eps <eps>', 'a row is removed when its cosine similarity to a reference row exceeds 1 - eps')
    .option('--within-clusters', "compare each row only with the reference rows assigned to its centroid (faster; prints its recall against the exact mode)")
    .option('--reference-ids <file>', 'ids of the reference rows (text, .npy or memmap)')
    .option('-o, --output <file>', 'kept ids (default: decontaminated_eps{eps}.txt in the output folder)')
    .option('--matches <file>', 'removed rows and the reference row that matched (CSV, or JSON Lines for .jsonl; default: decontaminated_eps{eps}_matches.csv)')
    .option('--recall-sample <n>', 'within-clusters: rows of the sample compared exactly for the recall', '20000')
    .action(lazy('decontaminateAction'));

  withCommon(program.command('report').description('one self-contained HTML page about the run (curve, histogram of M, clusters, removed items)'), 'report')
    .option('-o, --output <file>', 'the HTML file (default: report.html in the output folder)')
    .option('--eps <eps>', 'eps of the removed sample (default: the first recorded eps)')
    .option('--sample <n>', 'removed items shown', '48')
    .option('--remote-thumbnails', 'show ids that are http(s) image URLs as pictures loaded from the network when the page is opened (default: no request, such ids shown as text)')
    .action(lazy('reportAction'));

  withCommon(program.command('exact-duplicates').description('rows whose bytes are identical (the first in keep order is kept)'), 'exact-duplicates')
    .action(lazy('exactDuplicatesAction'));
}
