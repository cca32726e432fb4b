import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  configSchema,
  formatConfigDoc,
  loadConfigFiles,
  parseConfigObject,
  requireKeys,
  suggestKey,
  toManifest,
  DEFAULT_EPS_LIST,
} from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { ROOT, tmpFolder } from './helpers.js';


function tmp(): string {
  return tmpFolder('config');
}

function write(dir: string, name: string, text: string): string {
  const f = path.join(dir, name);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text);
  return f;
}

/** The original's clustering_configs.yaml, with the placeholders filled in. */
const CLUSTERING = `sim_metric: 'cosine' # choose form ['cosine', 'l2']
keep_hard: True # True for hard examples
Kmeans_with_cos_dist: True # True for using cosine similarity for kmeans clustering
emb_memory_loc: "data/embs.npy"
text_emb_memory_loc: None
paths_memory_loc: "data/paths.npy"
sorted_clusters_file_loc: "out/sorted_clusters"
save_folder: "out"
path_str_dtype: "S24"
ncentroids: 50000
dataset_size:  1000000
emb_size: 768
niter: 100
seed: 1234
`;

/** The original's semdedup_configs.yaml, with the placeholders filled in. */
const SEMDEDUP = (embSize: number) => `save_folder: "out"
sorted_clusters_path: "out/sorted_clusters"
# -- number of clusters
num_clusters: 50000
embs_memory_loc: "data/embs.npy"
# -- dataset size
dataset_size: 1000000
# -- embeddings size
emd_size: ${embSize}
# -- which example to keep from each group of duplicates
which_to_keep: "hard"
# -- seed
seed: 1234
# -- largest cluster size the memory is large enough to process.
largest_cluster_size_to_process: 10000000
`;

/** Asserts that fn throws a ConfigError whose message matches every pattern; returns it. */
function throwsConfig(fn: () => unknown, ...patterns: (RegExp | string)[]): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.code, 'ERR_CONFIG');
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(caught.message.includes(p), `message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(p)}`);
    else assert.match(caught.message, p);
  }
  return caught;
}

/** Loads one YAML text written to a temp file named `name`. */
function loadText(text: string, name = 'semdedup.yaml') {
  const dir = tmp();
  return loadConfigFiles([write(dir, name, text)], undefined, { cwd: dir });
}

test('original clustering_configs.yaml: aliases, YAML 1.1 booleans, None, cwd-relative paths', () => {
  const root = tmp();
  const cwd = path.join(root, 'work');
  mkdirSync(cwd);
  const file = write(root, 'cfg/clustering.yaml', CLUSTERING);
  const cfg = loadConfigFiles([file], undefined, { cwd });
  // Original format: relative to the working directory, not to cfg/.
  assert.equal(cfg.embeddings, path.join(cwd, 'data/embs.npy'));
  assert.equal(cfg.ids, path.join(cwd, 'data/paths.npy'));
  assert.equal(cfg.outputDir, path.join(cwd, 'out'));
  assert.equal(cfg.sortedClustersDir, path.join(cwd, 'out/sorted_clusters'));
  assert.equal(cfg.spherical, true);
  assert.equal(cfg.keepHard, true);
  assert.equal(cfg.simMetric, 'cosine');
  assert.equal(cfg.k, 50000);
  assert.equal(cfg.dim, 768);
  assert.equal(cfg.datasetSize, 1000000);
  assert.equal(cfg.idsDtype, 'S24');
  assert.equal(cfg.niter, 100);
  assert.equal(cfg.seed, 1234);
  // Not set anywhere: defaults.
  assert.equal(cfg.embeddingsFormat, 'auto');
  assert.equal(cfg.whichToKeep, 'hard');
  assert.deepEqual(cfg.epsList, [...DEFAULT_EPS_LIST]);
  assert.equal(cfg.sources.k, file);
  assert.equal(cfg.sources.spherical, file);
  assert.equal(cfg.sources.which_to_keep, 'default');
  // text_emb_memory_loc: None is accepted and means "not set".
  assert.equal(cfg.sources.text_emb_memory_loc, undefined);
  assert.equal('textEmbMemoryLoc' in cfg, false);
  assert.deepEqual(cfg.files, [file]);
});

test('False and keep_hard: False parse as booleans', () => {
  const cfg = loadText(CLUSTERING.replace('keep_hard: True', 'keep_hard: False').replace('Kmeans_with_cos_dist: True', 'Kmeans_with_cos_dist: False'));
  assert.equal(cfg.keepHard, false);
  assert.equal(cfg.spherical, false);
});

test('both original files merge for run', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', CLUSTERING);
  const b = write(dir, 'semdedup.yaml', SEMDEDUP(768));
  const cfg = loadConfigFiles([a, b], undefined, { cwd: dir });
  const full = requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'run');
  assert.equal(full.k, 50000);
  assert.equal(full.embeddings, path.join(dir, 'data/embs.npy'));
  assert.equal(full.outputDir, path.join(dir, 'out'));
  assert.equal(full.sortedClustersDir, path.join(dir, 'out/sorted_clusters'));
  assert.equal(full.dim, 768);
  assert.equal(full.whichToKeep, 'hard');
  assert.equal(full.largestClusterSizeToProcess, 10000000);
  assert.equal(full.spherical, true);
  // The first file that set a key is its source.
  assert.equal(full.sources.seed, a);
  assert.equal(full.sources.which_to_keep, b);
  assert.deepEqual(full.files, [a, b]);
});

test('the unmodified emb_size 768 / emd_size 512 of the originals conflict, naming both files and keys', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', CLUSTERING);
  const b = write(dir, 'semdedup.yaml', SEMDEDUP(512));
  const err = throwsConfig(() => loadConfigFiles([a, b], undefined, { cwd: dir }), "'dim'", 'emb_size: 768', 'emd_size: 512', a, b);
  assert.equal(err.key, 'dim');
});

test('a seed that differs between two files is an error naming both files', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', CLUSTERING.replace('seed: 1234', 'seed: 1'));
  const b = write(dir, 'semdedup.yaml', SEMDEDUP(768).replace('seed: 1234', 'seed: 2'));
  throwsConfig(() => loadConfigFiles([a, b], undefined, { cwd: dir }), "'seed'", 'seed: 1 in', 'seed: 2 in', a, b);
});

test('two names of one key in one file must agree', () => {
  throwsConfig(() => loadText('ncentroids: 10\nnum_clusters: 11\n'), "'ncentroids'", "'num_clusters'", "'k'");
  assert.equal(loadText('ncentroids: 10\nk: 10\n').k, 10);
});

test('overrides win over files, accept strings and camelCase, and resolve against cwd', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', CLUSTERING);
  const cfg = loadConfigFiles([a], { k: '7', seed: 9, outputDir: 'elsewhere', spherical: 'false', eps_list: '0.2', dim: undefined }, { cwd: dir });
  assert.equal(cfg.k, 7);
  assert.equal(cfg.seed, 9);
  assert.equal(cfg.spherical, false);
  assert.equal(cfg.outputDir, path.join(dir, 'elsewhere'));
  assert.deepEqual(cfg.epsList, [0.2]);
  assert.equal(cfg.dim, 768);
  assert.equal(cfg.sources.k, 'option');
  assert.equal(cfg.sources.dim, a);
  // The sorted clusters folder came from the file and stays.
  assert.equal(cfg.sortedClustersDir, path.join(dir, 'out/sorted_clusters'));
  throwsConfig(() => loadConfigFiles([a], { ncentroid: 3 }), "<options>: unknown key 'ncentroid'. Did you mean 'ncentroids'?");
  throwsConfig(() => loadConfigFiles([a], { k: 'many' }), "<options>: key 'k' must be a positive integer");
});

test('configs/example.yaml parses; its relative paths resolve against configs/', () => {
  const file = path.join(ROOT, 'configs', 'example.yaml');
  const configsDir = path.join(ROOT, 'configs');
  const elsewhere = tmp();
  const cfg = loadConfigFiles([file], undefined, { cwd: elsewhere });
  assert.equal(cfg.embeddings, path.resolve(configsDir, '../examples-out/data/embs_memory.npy'));
  assert.equal(cfg.ids, path.resolve(configsDir, '../examples-out/data/paths_memory.npy'));
  assert.equal(cfg.outputDir, path.resolve(configsDir, '../examples-out/output'));
  assert.equal(cfg.k, 20);
  assert.equal(cfg.dim, 64);
  assert.equal(cfg.spherical, true);
  requireKeys(cfg, ['embeddings', 'output_dir', 'k'], 'run');
  // Every key of the schema is documented in the example.
  const text = readFileSync(file, 'utf8');
  for (const s of configSchema) assert.ok(new RegExp(`^#? ?${s.key}\\b`, 'm').test(text), `configs/example.yaml does not document ${s.key}`);
});

test('configs/original/*.yaml merge without conflict and resolve against cwd', () => {
  const cwd = tmp();
  const cfg = loadConfigFiles(
    [path.join(ROOT, 'configs/original/clustering_configs.yaml'), path.join(ROOT, 'configs/original/semdedup_configs.yaml')],
    undefined,
    { cwd },
  );
  assert.equal(cfg.embeddings, path.join(cwd, 'examples-out/data/embs_memory.npy'));
  assert.equal(cfg.k, 20);
  assert.equal(cfg.dim, 64);
  assert.equal(cfg.datasetSize, 10000);
  // The same example data as configs/example.yaml, seen from the repository root.
  const ours = loadConfigFiles([path.join(ROOT, 'configs/example.yaml')]);
  const orig = loadConfigFiles(
    [path.join(ROOT, 'configs/original/clustering_configs.yaml'), path.join(ROOT, 'configs/original/semdedup_configs.yaml')],
    undefined,
    { cwd: ROOT },
  );
  assert.equal(orig.embeddings, ours.embeddings);
  assert.equal(orig.ids, ours.ids);
  assert.equal(orig.outputDir, ours.outputDir);
  assert.equal(orig.sortedClustersDir, ours.sortedClustersDir);
  assert.equal(orig.k, ours.k);
});

test('our format resolves relative to the file, original names to cwd', () => {
  const root = tmp();
  const cwd = path.join(root, 'cwd');
  mkdirSync(cwd);
  const ours = write(root, 'cfg/ours.yaml', 'embeddings: e.npy\noutput_dir: out\n');
  const theirs = write(root, 'cfg/theirs.yaml', 'emb_memory_loc: e.npy\noutput_dir: out\n');
  const a = loadConfigFiles([ours], undefined, { cwd });
  assert.equal(a.embeddings, path.join(root, 'cfg/e.npy'));
  assert.equal(a.outputDir, path.join(root, 'cfg/out'));
  assert.equal(a.sortedClustersDir, path.join(root, 'cfg/out/sorted_clusters'));
  const b = loadConfigFiles([theirs], undefined, { cwd });
  assert.equal(b.embeddings, path.join(cwd, 'e.npy'));
  assert.equal(b.outputDir, path.join(cwd, 'out'));
  // Absolute paths are kept as they are.
  const abs = path.join(root, 'abs.npy');
  assert.equal(loadText(`embeddings: ${JSON.stringify(abs)}\n`).embeddings, abs);
});

test('unknown keys suggest the nearest valid key', () => {
  throwsConfig(() => loadText('ncentroid: 10\n', 'clustering.yaml'), /clustering\.yaml: unknown key 'ncentroid'\. Did you mean 'ncentroids'\?$/);
  throwsConfig(() => loadText('kmeans_with_cos_dist: True\n'), "Did you mean 'Kmeans_with_cos_dist'?");
  throwsConfig(() => loadText('outputDir: x\n'), "Did you mean 'output_dir'?");
  throwsConfig(() => loadText('eps_lsit: [0.1]\n'), "Did you mean 'eps_list'?");
  const err = throwsConfig(() => loadText('completely_unrelated_option: 1\n'), "unknown key 'completely_unrelated_option'");
  assert.ok(!err.message.includes('Did you mean'));
  assert.equal(err.key, 'completely_unrelated_option');
  assert.equal(suggestKey('num_cluster'), 'num_clusters');
  assert.equal(suggestKey('thred'), 'threads'); // distance 2 on a short key: still suggested
  assert.equal(suggestKey('zzzzzz'), undefined);
});

test('wrong types name the file, key and expected type', () => {
  const err = throwsConfig(() => loadText('niter: "100x"\n'), /^.*semdedup\.yaml: key 'niter' must be a positive integer, got "100x" \(string\)$/);
  assert.equal(err.key, 'niter');
  assert.ok(err.file?.endsWith('semdedup.yaml'));
  throwsConfig(() => loadText('niter: 2.5\n'), "key 'niter' must be a positive integer, got 2.5 (number)");
  throwsConfig(() => loadText('niter: "100"\n'), "key 'niter' must be a positive integer, got \"100\" (string)");
  throwsConfig(() => loadText('keep_hard: 3\n'), "key 'keep_hard' must be a boolean (true or false), got 3 (number)");
  throwsConfig(() => loadText("sim_metric: 'cos'\n"), "key 'sim_metric' must be one of 'cosine', 'l2', got \"cos\" (string)");
  throwsConfig(() => loadText('save_folder: 12\n'), "key 'save_folder' must be a path (a non-empty string), got 12 (number)");
  throwsConfig(() => loadText('path_str_dtype: float32\n'), "key 'path_str_dtype' must be a numpy fixed-width string dtype");
  throwsConfig(() => loadText('threads: -1\n'), "key 'threads' must be a non-negative integer, got -1 (number)");
  throwsConfig(() => loadText('seed: [1]\n'), "key 'seed' must be an integer, got [1] (list)");
  throwsConfig(() => loadText('dim: {a: 1}\n'), "key 'dim' must be a positive integer", '(mapping)');
  // Enum values are case-insensitive, as in the original (which_to_keep.lower()).
  assert.equal(loadText('which_to_keep: Random\n').whichToKeep, 'random');
  assert.equal(loadText('ids_dtype: U40\n').idsDtype, 'U40');
});

test('template placeholders get a specific message', () => {
  const err = throwsConfig(
    () => loadText('emb_size: 768\ndataset_size:  <dataset_size> \n', 'clustering.yaml'),
    "clustering.yaml: key 'dataset_size' still holds the template placeholder '<dataset_size>'",
  );
  assert.equal(err.key, 'dataset_size');
  const fixtures = path.join(ROOT, 'test/fixtures/original');
  throwsConfig(
    () => loadConfigFiles([path.join(fixtures, 'clustering_configs.template.yaml')]),
    "key 'emb_memory_loc' still holds the template placeholder '<your path>'",
    "'dataset_size' ('<dataset_size>')",
    'replace them with real values',
  );
  throwsConfig(
    () => loadConfigFiles([path.join(fixtures, 'semdedup_configs.template.yaml')]),
    "key 'save_folder' still holds the template placeholder '<your path>'",
    "'embs_memory_loc'",
  );
});

test('eps values must lie strictly inside (0, 1)', () => {
  for (const bad of ['[0]', '[1]', '[-0.1]', '[1.5]', '[.nan]', '[abc]', '[0.1, 1.0]', '[.inf]', '[]']) {
    throwsConfig(() => loadText(`eps_list: ${bad}\n`), "key 'eps_list'");
  }
  throwsConfig(() => loadText('eps_list: [0.1, 1.5]\n'), 'strictly between 0 and 1, got 1.5 (number) at position 2');
  throwsConfig(() => loadText('eps_list: [abc]\n'), 'got "abc" (string)');
  throwsConfig(() => parseConfigObject({ eps_list: [Number.NaN] }, '<api>'), '<api>: key', 'got NaN (number)');
  throwsConfig(() => parseConfigObject({ eps_list: [0.1, 0.1] }, '<api>'), 'twice');
  throwsConfig(() => loadText('eps_list: true\n'), "key 'eps_list' must be a list of numbers");
});

test('eps_list as a comma-separated string or a single number', () => {
  assert.deepEqual(loadText('eps_list: "0.01,0.05"\n').epsList, [0.01, 0.05]);
  assert.deepEqual(loadText('eps_list: 0.01, 0.05, 0.1\n').epsList, [0.01, 0.05, 0.1]);
  assert.deepEqual(loadText('eps_list: 0.07\n').epsList, [0.07]);
  assert.deepEqual(loadText('eps_list: [1.0e-2, 0.3]\n').epsList, [0.01, 0.3]);
  throwsConfig(() => loadText('eps_list: "0.01,abc"\n'), 'got "abc" (string) at position 2');
  throwsConfig(() => loadText('eps_list: "0.01,0"\n'), 'got 0 (number) at position 2');
});

test('sim_metric l2 with spherical k-means is an error naming the keys and files', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', CLUSTERING.replace("sim_metric: 'cosine'", "sim_metric: 'l2'"));
  throwsConfig(() => loadConfigFiles([a], undefined, { cwd: dir }), "sim_metric 'l2'", `sim_metric in ${a}`, `Kmeans_with_cos_dist in ${a}`);
  const b = write(dir, 'metric.yaml', 'sim_metric: l2\n');
  const c = write(dir, 'sph.yaml', 'spherical: true\n');
  throwsConfig(() => loadConfigFiles([b, c]), `sim_metric in ${b}`, `spherical in ${c}`);
  // l2 without spherical is fine.
  assert.equal(loadText('sim_metric: l2\nspherical: false\n').simMetric, 'l2');
});

test('k = 0 and other non-positive counts are errors', () => {
  throwsConfig(() => loadText('ncentroids: 0\n', 'clustering.yaml'), "clustering.yaml: key 'ncentroids' must be a positive integer, got 0 (number)");
  throwsConfig(() => loadText('k: -3\n'), "key 'k' must be a positive integer, got -3 (number)");
  throwsConfig(() => loadText('dataset_size: 0\n'), "key 'dataset_size' must be a positive integer");
  throwsConfig(() => loadText('max_points_per_centroid: 0\n'), "key 'max_points_per_centroid'");
});

test('file problems: missing, directory, invalid YAML, top level not a mapping, empty', () => {
  const dir = tmp();
  const missing = path.join(dir, 'nope.yaml');
  const e1 = throwsConfig(() => loadConfigFiles([missing]), `config file not found: ${missing}`);
  assert.equal(e1.file, missing);
  throwsConfig(() => loadConfigFiles([dir]), 'is a directory');
  const bad = write(dir, 'bad.yaml', 'k: [1, 2\nniter: 3\n');
  const e2 = throwsConfig(() => loadConfigFiles([bad]), `${bad}: invalid YAML`);
  assert.equal(e2.file, bad);
  const dup = write(dir, 'dup.yaml', 'k: 1\nk: 2\n');
  throwsConfig(() => loadConfigFiles([dup]), `${dup}: invalid YAML`);
  const list = write(dir, 'list.yaml', '- k: 1\n- niter: 2\n');
  throwsConfig(() => loadConfigFiles([list]), `${list}: the top level must be a mapping`, 'got a list');
  const scalar = write(dir, 'scalar.yaml', 'hello\n');
  throwsConfig(() => loadConfigFiles([scalar]), 'got a string');
  const empty = write(dir, 'empty.yaml', '# nothing yet\n');
  const cfg = loadConfigFiles([empty]);
  assert.equal(cfg.k, undefined);
  assert.equal(cfg.niter, 20);
});

test('None / null / ~ mean "not set"', () => {
  const cfg = loadText('centroids: None\nids: ~\ndim: null\nk:\nseed: 7\n');
  assert.equal(cfg.centroids, undefined);
  assert.equal(cfg.ids, undefined);
  assert.equal(cfg.dim, undefined);
  assert.equal(cfg.k, undefined);
  assert.equal(cfg.seed, 7);
});

test('requireKeys names the key, its original names and the files read', () => {
  const dir = tmp();
  const a = write(dir, 'clustering.yaml', 'seed: 1\n');
  const b = write(dir, 'semdedup.yaml', 'niter: 5\n');
  const cfg = loadConfigFiles([a, b]);
  const err = throwsConfig(
    () => requireKeys(cfg, ['k'], 'cluster'),
    "semdedup cluster needs `k` (ncentroids in the original's clustering_configs.yaml, num_clusters in the original's semdedup_configs.yaml)",
    `none of ${a}, ${b} sets it`,
  );
  assert.equal(err.key, 'k');
  throwsConfig(() => requireKeys(parseConfigObject({}, '<api>'), ['output_dir'], 'semdedup extract'), 'semdedup extract needs `output_dir` (save_folder in the original');
  throwsConfig(() => requireKeys({ ...cfg, files: [] }, ['embeddings'], 'run'), 'no config file was given');
  const ok = requireKeys(parseConfigObject({ k: 3, embeddings: '/e.npy', output_dir: '/o' }, '<api>'), ['k', 'embeddings', 'output_dir'], 'run');
  const k: number = ok.k;
  assert.equal(k, 3);
});

test('toManifest is JSON-able and parses back to the same config', () => {
  const dir = tmp();
  const cfg = loadConfigFiles([write(dir, 'c.yaml', CLUSTERING), write(dir, 's.yaml', SEMDEDUP(768))], undefined, { cwd: dir });
  const m = toManifest(cfg);
  assert.deepEqual(JSON.parse(JSON.stringify(m)), m);
  assert.equal(m.k, 50000);
  assert.equal(m.output_dir, path.join(dir, 'out'));
  assert.equal('sources' in m, false);
  assert.equal('files' in m, false);
  assert.equal('centroids' in m, false);
  const back = parseConfigObject(m, '<manifest>');
  assert.deepEqual(toManifest(back), m);
});

test('parseConfigObject validates like a file', () => {
  const cfg = parseConfigObject({ ncentroids: 4, Kmeans_with_cos_dist: true, emb_memory_loc: 'x.npy' }, '<options>', { cwd: '/base' });
  assert.equal(cfg.k, 4);
  assert.equal(cfg.spherical, true);
  assert.equal(cfg.embeddings, path.resolve('/base', 'x.npy'));
  assert.equal(cfg.sources.k, '<options>');
  throwsConfig(() => parseConfigObject({ niter: '5' }, '<options>'), "<options>: key 'niter' must be a positive integer");
  assert.equal(parseConfigObject({ niter: '5' }, '<options>', { coerceStrings: true }).niter, 5);
  throwsConfig(() => parseConfigObject([1], '<options>'), 'top level must be a mapping');
});

test('formatConfigDoc lists every key with its original names and default', () => {
  const doc = formatConfigDoc();
  const lines = doc.split('\n');
  assert.equal(lines.length, configSchema.length + 2);
  for (const s of configSchema) {
    const line = lines.find((l) => l.startsWith(`| \`${s.key}\` |`));
    assert.ok(line, `no line for ${s.key}`);
    for (const a of s.aliases) assert.ok(line.includes(`\`${a.name}\``), `${s.key} line lacks ${a.name}`);
    assert.ok(line.includes(s.defaultText.replace(/\|/g, '\\|')));
  }
  // Every row has five cells (pipes inside cells are escaped).
  for (const l of lines) assert.equal(l.split(/(?<!\\)\|/).length, 7, l);
});
