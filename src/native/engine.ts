// The engine handle of a device choice, resolved once per process by the native facade: where
// heavy jobs run (`device`), and why not the GPU under auto (`note`). Nothing else derives the
// backend: callers read `device` here and pass the handle to the heavy calls as `engine`.
import { loadNative } from './loader.js';
import type { DeviceChoice, NativeEngine } from './types.js';

const engines = new Map<DeviceChoice, NativeEngine>();

/** The engine of a device choice (absent: auto). Throws ERR_BACKEND for 'cuda' without a usable GPU. */
export function engineFor(device: DeviceChoice = 'auto'): NativeEngine {
  let e = engines.get(device);
  if (!e) {
    e = new (loadNative().Engine)({ device });
    engines.set(device, e);
  }
  return e;
}
