// The removal rule on the C++ side (its TypeScript home is src/decision.ts, which also turns an
// eps into its threshold 1 - eps and validates eps and k): a member whose largest similarity to an
// earlier member of its cluster, M, is above the threshold is removed. Native code receives
// thresholds, never eps, and decides with this function only.
#pragma once

namespace semdedup {

inline bool removed_at(double M, double threshold) { return M > threshold; }

}  // namespace semdedup
