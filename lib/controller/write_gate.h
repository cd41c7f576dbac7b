// The write gate: whether this replica may write now. A controller that runs only while it leads holds one per
// leadership term; every write it makes asks the gate first, and stamps the term's fencing token on what it writes.
#pragma once

#include <cstdint>

#include "fencing/token.h"

namespace singleton::controller {

// Decides whether this replica may write: it still leads, under this term (its own Lease's fencing token).
class WriteGate {
 public:
  virtual ~WriteGate() = default;
  virtual bool mayWrite() const = 0;
  virtual fencing::FencingToken term() const = 0;
  // The revision (etcd's, as a resourceVersion) of this replica's own Lease when it began leading: every write of an
  // earlier leader is older. 0 when unknown.
  virtual std::uint64_t leadingSince() const { return 0; }
};

}  // namespace singleton::controller
