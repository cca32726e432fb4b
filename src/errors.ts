// Typed errors of the engine. Every error the user can meet is a SemDedupError with a stable
// `code`; the CLI prints its message and exits non-zero.

export type ErrorCode =
  | 'ERR_CONFIG' // a config file or option is wrong (key, type, value)
  | 'ERR_INPUT' // an input file is missing, truncated, corrupt or inconsistent
  | 'ERR_NUMERIC' // NaN/Inf, zero rows, non-normalised rows
  | 'ERR_OUTPUT' // an output cannot be written
  | 'ERR_NATIVE' // the native addon failed to load or reported an internal error
  | 'ERR_CANCELLED' // the operation was cancelled
  | 'ERR_BACKEND'; // a requested backend (e.g. CUDA) is not available

export class SemDedupError extends Error {
  readonly code: ErrorCode;
  /** The file the error is about, when there is one. */
  readonly file?: string;
  /** The config key or field the error is about, when there is one. */
  readonly key?: string;
  constructor(code: ErrorCode, message: string, opts: { file?: string; key?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'SemDedupError';
    this.code = code;
    if (opts.file !== undefined) this.file = opts.file;
    if (opts.key !== undefined) this.key = opts.key;
  }
}

export class ConfigError extends SemDedupError {
  constructor(message: string, opts: { file?: string; key?: string } = {}) {
    super('ERR_CONFIG', message, opts);
    this.name = 'ConfigError';
  }
}

export class InputError extends SemDedupError {
  constructor(message: string, opts: { file?: string; key?: string; cause?: unknown } = {}) {
    super('ERR_INPUT', message, opts);
    this.name = 'InputError';
  }
}

export class NumericError extends SemDedupError {
  constructor(message: string, opts: { file?: string } = {}) {
    super('ERR_NUMERIC', message, opts);
    this.name = 'NumericError';
  }
}

export class OutputError extends SemDedupError {
  constructor(message: string, opts: { file?: string; cause?: unknown } = {}) {
    super('ERR_OUTPUT', message, opts);
    this.name = 'OutputError';
  }
}
