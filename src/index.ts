/// <reference types="node" preserve="true" />
// (Kept in the emitted index.d.ts: the declarations name Buffer, NodeJS.ProcessEnv and node:
// modules, and a program with `types: []`, the default from TypeScript 6, would not load Node's
// types otherwise. Every declaration file of the package is reached through this one.)
// The programmatic API of semdedup: the steps of the original pipeline under the names a reader
// of the original knows, options objects, promises, progress callbacks, typed errors.
export { getEmbeddings, PathsMemmap, type Batch, type Model } from './steps/embed.js';
export { loadEmbeddingModel, loadEmbeddingModel as loadModel, readModelLayout, type EmbeddingModel, type EmbeddingModelOptions, type EmbedCallOptions, type EmbedTiming, type EmbedDevice } from './embed/model.js';
export { embedFile, embedLayout, type EmbedFileOptions, type EmbedFileResult, type EmbedProgress } from './embed/run.js';
export { readTexts, type TextSource, type TextRecord, type TextFormat } from './embed/input.js';
export { computeCentroids, type ClusterOptions, type ClusterResult } from './steps/cluster.js';
export { assignAndSortClusters, type SortOptions, type SortResult } from './steps/sort.js';
export { prepareEmbeddings, NORM_TOLERANCE, type PrepareOptions, type NormalizeMode } from './steps/check.js';
export { isRemoved } from './decision.js';
export { semdedup, keepOrderOf, summarize, type DedupOptions, type DedupResult, type EpsSummary, type WhichToKeep } from './steps/dedup.js';
export { extractPrunedData, type ExtractOptions, type ExtractResult } from './steps/extract.js';
export type { CommonOptions, Progress, Device } from './steps/common.js';
export { describeProgress, overallProgress, unitOf, RUN_STAGE_WEIGHTS, type ProgressReport, type ProgressUnit } from './progress.js';
export type { Ran, MaxSimStats } from './native/index.js';
export { openEmbeddings, createEmbeddingsFile, embeddingsLayout, type Embeddings, type EmbeddingsSpec, type EmbeddingsLayout, type ShardLayout } from './embeddings.js';
export { prepareInputs, imported, type PrepareInputsOptions } from './inputs.js';
export { runAll, runCluster, runSort, runDedup, runExtract, type RunResult } from './pipeline.js';
export { dedup, DEFAULT_IN_MEMORY_EPS, type InMemoryDedupOptions, type InMemoryEmbeddingsOptions, type InMemoryTextsOptions, type InMemoryDedupResult, type InMemoryRunOptions, type RemovedItem, type EmbeddingsArray, type Float16ArrayLike } from './memory.js';
export { loadConfigFiles, parseConfigObject, requireKeys, configSchema, formatConfigDoc, withDefaults, resolveOptions, defaultK, configWarnings, DEFAULT_EPS_LIST, type SemDedupConfig, type PartialConfig, type PartialResolved, type Defaults, type RunOptions, type RunAllOptions, type LoadOptions } from './config.js';
export { readIds, checkUniqueIds, rowNumberIds, idsFromStrings, writeIdsMemmap, type Ids } from './io/ids.js';
export { readNpy, writeNpy, readNpyHeaderFromFile } from './io/npy.js';
export { engineInfo } from './info.js';
export { outputs } from './layout.js';
export { SemDedupError, ConfigError, InputError, NumericError, OutputError, type ErrorCode } from './errors.js';
export * from './after/index.js';
