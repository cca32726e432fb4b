// Working from a finished run: target fraction and curve, explanations, exact duplicates,
// decontamination against a reference set, the HTML report.
export { recheckEps, readRun, type RunArrays, type RunFolderOptions, type RecheckResult, type TableFormat } from './common.js';
export {
  keptFractionCurve, chooseEpsForFraction, epsForFraction, extractAt, epsGrid,
  type CurveOptions, type CurveResult, type CurvePoint, type EpsChoice, type FractionOptions, type FractionChoice, type ExtractAtOptions, type ExtractAtResult,
} from './fraction.js';
export { explainRemovals, explainId, type ExplainOptions, type ExplainResult, type ExplainIdOptions, type ExplainRow } from './explain.js';
export { findExactDuplicates, type ExactDuplicatesOptions, type ExactDuplicatesResult } from './exact.js';
export { decontaminate, type DecontaminateOptions, type DecontaminateResult, type DecontaminateMode } from './decontaminate.js';
export { writeReport, type ReportOptions, type ReportResult } from './report.js';
