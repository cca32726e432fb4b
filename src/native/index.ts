// The binding layer over the native addon: its types (types.ts), the loader (loader.ts), what it
// needs of the platform (platform.ts) and the engine handle of a device choice (engine.ts).
export * from './types.js';
export { blasCoreFor, candidatePaths, cpuFlags, platformPackage, userEnv, userOpenblasCoretype } from './platform.js';
export { blasSelection, loadNative, nativeInfo, nativePath } from './loader.js';
export { engineFor } from './engine.js';
