// Typed errors of the engine. Every error the user can meet is a SemDedupError with a stable
// `code`; the CLI prints its message and exits non-zero.

/**
 * Every code a user can meet, with what it means: the list of native/core/semdedup/errors.def
 * (SEMDEDUP_PUBLIC), which the C++ engine and the addon read too; test/errors-list.test.ts fails
 * when the two differ.
 */
export const ERROR_CODES = {
  ERR_CONFIG: 'a config file or option is wrong (key, type, value)',
  ERR_INPUT: 'an input file is missing, truncated, corrupt or inconsistent',
  ERR_NUMERIC: 'NaN/Inf, zero rows, non-normalised rows',
  ERR_OUTPUT: 'an output cannot be written',
  ERR_NATIVE: 'the native addon failed to load or reported an internal error',
  ERR_CANCELLED: 'the operation was cancelled',
  ERR_BACKEND: 'a requested backend (e.g. CUDA) is not available',
  ERR_TASK: 'a task of a planned run failed (its log says why)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The native engine's kinds of failure (errors.def, SEMDEDUP_CAUSE): an error thrown by the addon
 * carries one as `reason` (its `code` is the public code the kind maps to, e.g. 'io' → ERR_INPUT).
 */
export const NATIVE_REASONS = {
  'invalid-argument': 'ERR_INPUT',
  io: 'ERR_INPUT',
  format: 'ERR_INPUT',
  numeric: 'ERR_NUMERIC',
  cancelled: 'ERR_CANCELLED',
  backend: 'ERR_BACKEND',
  'out-of-memory': 'ERR_NATIVE',
  internal: 'ERR_NATIVE',
} as const satisfies Record<string, ErrorCode>;

export type NativeReason = keyof typeof NATIVE_REASONS;

export class SemDedupError extends Error {
  readonly code: ErrorCode;
  /** The file the error is about, when there is one. */
  readonly file?: string;
  /** The config key or field the error is about, when there is one. */
  readonly key?: string;
  /** The native engine's kind of failure, on errors the addon threw (e.g. 'io' or 'format' for ERR_INPUT). */
  readonly reason?: NativeReason;
  constructor(code: ErrorCode, message: string, opts: { file?: string; key?: string; cause?: unknown; reason?: NativeReason } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'SemDedupError';
    this.code = code;
    if (opts.file !== undefined) this.file = opts.file;
    if (opts.key !== undefined) this.key = opts.key;
    if (opts.reason !== undefined) this.reason = opts.reason;
  }

  /** The same error (code, reason, file) with its message prefixed by where it happened, e.g. the step or the file. */
  within(context: string, opts: { file?: string } = {}): SemDedupError {
    const file = opts.file ?? this.file;
    return new SemDedupError(this.code, `${context}: ${this.message}`, {
      cause: this,
      ...(file !== undefined ? { file } : {}),
      ...(this.key !== undefined ? { key: this.key } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
    });
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
