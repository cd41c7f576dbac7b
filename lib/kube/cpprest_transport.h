// The cpprestsdk Transport. Private to lib/kube: everything else sees only kube::Transport, so cpprestsdk (in
// maintenance mode) can be replaced by e.g. Boost.Beast without touching the layers above.
#pragma once

#include <memory>

#include "kube/config.h"
#include "kube/transport.h"
#include "util/result.h"

namespace singleton::kube::detail {

// Sizes cpprestsdk's process-wide I/O pool before anything uses it; only the first call has an effect. Returns the
// size in effect, or 0 when cpprestsdk had already started its default pool (40 threads) before we got here.
int initializeIoThreads(int threads);

util::Result<std::shared_ptr<Transport>> makeCpprestTransport(const ClusterConfig& config);

}  // namespace singleton::kube::detail
