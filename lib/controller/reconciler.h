// What a controller's worker calls: Reconcile(key) -> Result, level-based (read the world as it is now, never trust
// the event that woke you). The result alone decides what happens to the key next (ReconcileLoop, in one place).
#pragma once

#include <string>

#include "util/clock.h"

namespace singleton::controller {

struct ReconcileResult {
  enum class Action {
    kForget,        // done: reset the key's backoff
    kRequeue,       // a compare-and-swap lost: re-read and decide again, after the key's backoff (5 ms at first,
                    // doubling while it keeps losing: a conflict that persists must not spin)
    kRequeueAfter,  // after `after` (nothing failed, but look again later)
    kRetry,         // an error: rate-limited retry, not before `after` (a 429's Retry-After)
  };
  Action action = Action::kForget;
  util::Millis after{0};
  std::string detail;  // why, for logs
};

class Reconciler {
 public:
  virtual ~Reconciler() = default;
  // Never throws for API errors (they come back as kRetry or kRequeue); an exception is a bug, retried like an error.
  virtual ReconcileResult reconcile(const std::string& key) = 0;
};

}  // namespace singleton::controller
