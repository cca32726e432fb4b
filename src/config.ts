// The configuration: the schema (src/config/schema.ts), its loader (src/config/load.ts), its docs
// (src/config/docs.ts) and the API's typed options (src/config/options.ts), under one import path.
export * from './config/schema.js';
export * from './config/load.js';
export * from './config/docs.js';
export * from './config/options.js';
