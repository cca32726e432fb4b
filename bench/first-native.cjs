// Preload (`node -r bench/first-native.cjs ...`) for bench/startup.sh: records when the process
// first calls into the native addon. It wraps the exports of every .node file loaded through
// process.dlopen and, at the first call or construction (other than the loader's registration), writes one line to the file named by
// SEMDEDUP_FIRST_NATIVE: the process's CPU seconds (user + system), the wall seconds since the
// process started and the name of the export called.
'use strict';
const { appendFileSync } = require('node:fs');
const { performance } = require('node:perf_hooks');
const target = process.env.SEMDEDUP_FIRST_NATIVE;
let seen = false;
// The loader's own registration call at load time is not work.
const SETUP = new Set(['setErrorClass']);
function record(name) {
  if (seen || !target || SETUP.has(name)) return;
  seen = true;
  const u = process.cpuUsage();
  appendFileSync(target, `${((u.user + u.system) / 1e6).toFixed(4)} ${(performance.now() / 1e3).toFixed(4)} ${name}\n`);
}
const dlopen = process.dlopen;
process.dlopen = function (module, filename, ...rest) {
  const r = dlopen.call(this, module, filename, ...rest);
  const ex = module.exports;
  if (ex && typeof ex === 'object') {
    for (const key of Object.keys(ex)) {
      const f = ex[key];
      if (typeof f !== 'function') continue;
      ex[key] = new Proxy(f, {
        apply(t, self, args) { record(key); return Reflect.apply(t, self, args); },
        construct(t, args, nt) { record(key); return Reflect.construct(t, args, nt); },
      });
    }
  }
  return r;
};
